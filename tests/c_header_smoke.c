/* Compiled as C: the C API header must be valid C, and usable without any C++ or CUDA header. */
#include "contrastive/contrastive.h"

int contrastive_c_smoke_check(int64_t batch, size_t* workspace_bytes) {
  contrastive_infonce_params_t params;
  contrastive_infonce_params_init(&params);
  params.batch = batch;
  params.num_keys = batch;
  params.dim = 4;
  int status = contrastive_infonce_check(&params);
  if (status == CONTRASTIVE_SUCCESS) {
    status = contrastive_infonce_workspace_size(&params, workspace_bytes);
  }
  return status;
}
