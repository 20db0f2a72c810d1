# cmake -DINPUT=<file> -DOUTPUT=<header> -DNAME=<symbol> -P embed_file.cmake
# Writes a header holding the file's bytes as `inline constexpr unsigned char <NAME>[]` and `<NAME>Size`, so a file
# (the server's web page) is compiled into the binary: nothing to install beside it, nothing fetched at run time.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" n_hex)
math(EXPR n_bytes "${n_hex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# About 16 bytes a line, so the header stays readable in a diff or an editor.
string(REGEX REPLACE "((0x..,){16})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
     "// Generated from ${INPUT} by cmake/embed_file.cmake: do not edit.\n#pragma once\n\n#include <cstddef>\n\n"
     "inline constexpr unsigned char ${NAME}[] = {\n    ${bytes}0x00};\n"
     "inline constexpr std::size_t ${NAME}Size = ${n_bytes};\n")
# Only a changed header is rewritten, so an unchanged page rebuilds nothing.
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
