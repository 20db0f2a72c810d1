// --gpu_num N (SkyReels' flag): this very command again, as N processes of this host under OpenMPI's mpirun.
#pragma once

namespace sr::cli {

// Does not return on success (the process becomes mpirun); throws InputError when mpirun cannot be started.
[[noreturn]] void relaunch_under_mpirun(int ranks);

}  // namespace sr::cli
