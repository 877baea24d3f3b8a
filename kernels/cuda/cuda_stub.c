/* Built when nvcc is absent: the CUDA instance reports that it is missing. */
#include "../ey_backend.h"

ey_err ey_backend_cuda_create(int device, ey_backend **out)
{
    (void)device;
    *out = NULL;
    return ey_err_set(EY_ERR_UNSUPPORTED, "this build of eyrie has no CUDA backend");
}
