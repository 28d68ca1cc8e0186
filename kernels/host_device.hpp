// CONTRASTIVE_HOST_DEVICE marks helpers compiled both by nvcc (for kernels) and by g++ (for the
// host and its CPU tests).
#pragma once

#if defined(__CUDACC__)
#define CONTRASTIVE_HOST_DEVICE __host__ __device__
#else
#define CONTRASTIVE_HOST_DEVICE
#endif
