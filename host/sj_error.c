#include "sj_error.h"

const char *sj_strerror(int err)
{
    switch (err) {
    case SJ_OK:
        return "success";
#define XX(name, msg)                                                          \
    case SJ_E##name:                                                           \
        return msg;
        SJ_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}
