# Turn a text file into a C source defining
#   const char <SYMBOL>[] and const size_t <SYMBOL>_len
# so the host carries its Lua code and needs no install path at run time.
# Usage: cmake -DIN=file.lua -DOUT=file.c -DSYMBOL=name -P embed.cmake
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT}
    "/* Generated from ${IN}; do not edit. */\n#include <stddef.h>\n"
    "const char ${SYMBOL}[] = {${body} 0};\n"
    "const size_t ${SYMBOL}_len = ${len};\n")
