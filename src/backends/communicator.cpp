#include "backends/communicator.h"

#include "core/error.h"

namespace sr {

void check_all_to_all(const Communicator& comm, const Tensor& send, const Tensor& recv) {
    SR_ASSERT(send.is_contiguous() && recv.is_contiguous(), "{} all_to_all of {} into {}: not contiguous", comm.kind(),
              send.describe(), recv.describe());
    SR_ASSERT(send.dtype() == recv.dtype() && send.numel() == recv.numel() && send.numel() % comm.size() == 0,
              "{} all_to_all of {} into {} over {} ranks", comm.kind(), send.describe(), recv.describe(), comm.size());
    SR_ASSERT(comm.moves(send.device()) && comm.moves(recv.device()), "{} all_to_all cannot move {} memory",
              comm.kind(), send.device().name());
}

void check_all_gather(const Communicator& comm, const Tensor& send, const Tensor& recv) {
    SR_ASSERT(send.is_contiguous() && recv.is_contiguous(), "{} all_gather of {} into {}: not contiguous", comm.kind(),
              send.describe(), recv.describe());
    SR_ASSERT(send.dtype() == recv.dtype() && recv.numel() == send.numel() * comm.size(),
              "{} all_gather of {} into {} over {} ranks", comm.kind(), send.describe(), recv.describe(), comm.size());
    SR_ASSERT(comm.moves(send.device()) && comm.moves(recv.device()), "{} all_gather cannot move {} memory",
              comm.kind(), send.device().name());
}

}  // namespace sr
