/* Compiled as C: the C API header must be valid C, and usable without any C++ or CUDA header. */
#include "contrastive/contrastive.h"

/* The layouts as a C compiler lays them out: the sizes and offsets host/c_api.cpp pins. */
_Static_assert(sizeof(contrastive_infonce_params_t) == 144, "infonce params size");
_Static_assert(offsetof(contrastive_infonce_params_t, batch) == 8, "infonce batch");
_Static_assert(offsetof(contrastive_infonce_params_t, temperature) == 116, "infonce temperature");
_Static_assert(offsetof(contrastive_infonce_params_t, reserved) == 124, "infonce reserved");
_Static_assert(offsetof(contrastive_infonce_params_t, log_scale) == 128, "infonce log_scale");
_Static_assert(offsetof(contrastive_infonce_params_t, temperature_device) == 136,
               "infonce temperature_device");
_Static_assert(sizeof(contrastive_mnr_per_anchor_params_t) == 88, "per-anchor params size");
_Static_assert(offsetof(contrastive_mnr_per_anchor_params_t, scale) == 68, "per-anchor scale");
_Static_assert(offsetof(contrastive_mnr_per_anchor_params_t, reserved) == 76,
               "per-anchor reserved");
_Static_assert(sizeof(contrastive_mnr_in_batch_params_t) == 136, "in-batch params size");
_Static_assert(offsetof(contrastive_mnr_in_batch_params_t, scale) == 108, "in-batch scale");
_Static_assert(offsetof(contrastive_mnr_in_batch_params_t, reserved) == 116, "in-batch reserved");
_Static_assert(offsetof(contrastive_mnr_in_batch_params_t, scale_device) == 128,
               "in-batch scale_device");
_Static_assert(sizeof(contrastive_repel_params_t) == 72, "repel params size");
_Static_assert(offsetof(contrastive_repel_params_t, margin) == 60, "repel margin");
_Static_assert(offsetof(contrastive_repel_params_t, reserved) == 68, "repel reserved");
_Static_assert(sizeof(contrastive_siglip_params_t) == 160, "siglip params size");
_Static_assert(offsetof(contrastive_siglip_params_t, log_scale) == 104, "siglip log_scale");
_Static_assert(offsetof(contrastive_siglip_params_t, scale) == 120, "siglip scale");
_Static_assert(offsetof(contrastive_siglip_params_t, bias) == 124, "siglip bias");
_Static_assert(offsetof(contrastive_siglip_params_t, reserved) == 132, "siglip reserved");
_Static_assert(offsetof(contrastive_siglip_params_t, max_scale) == 136, "siglip max_scale");
_Static_assert(offsetof(contrastive_siglip_params_t, bias_device) == 152, "siglip bias_device");

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

/* One function of each loss family added after InfoNCE, called from C. */
int contrastive_c_smoke_mnr_per_anchor(int64_t batch, size_t* saved_bytes) {
  contrastive_mnr_per_anchor_params_t params;
  contrastive_mnr_per_anchor_params_init(&params);
  params.batch = batch;
  params.negatives = 3;
  params.dim = 4;
  return contrastive_mnr_per_anchor_saved_size(&params, saved_bytes);
}

int contrastive_c_smoke_mnr_in_batch(int64_t batch, size_t* workspace_bytes) {
  contrastive_mnr_in_batch_params_t params;
  contrastive_mnr_in_batch_params_init(&params);
  params.batch = batch;
  params.hard_negatives = 1;
  params.dim = 4;
  int status = contrastive_mnr_in_batch_check(&params);
  if (status == CONTRASTIVE_SUCCESS) {
    status = contrastive_mnr_in_batch_workspace_size(&params, workspace_bytes);
  }
  return status;
}

/* Returns the check's status; *forward_status is a forward call's without any buffers. */
int contrastive_c_smoke_repel(int64_t batch, int* forward_status) {
  contrastive_repel_params_t params;
  contrastive_repel_params_init(&params);
  params.batch = batch;
  params.negatives = 2;
  params.dim = 4;
  int status = contrastive_repel_check(&params);
  if (status == CONTRASTIVE_SUCCESS) {
    struct CUstream_st* stream = NULL;
    *forward_status =
        contrastive_repel_forward(NULL, &params, NULL, NULL, NULL, NULL, NULL, 0, stream);
  }
  return status;
}

/* Dot similarity: nothing is saved, so *saved_bytes is 0; returns the check's status. */
int contrastive_c_smoke_siglip(int64_t batch, size_t* saved_bytes) {
  contrastive_siglip_params_t params;
  contrastive_siglip_params_init(&params);
  params.batch = batch;
  params.num_keys = batch;
  params.dim = 4;
  params.similarity = CONTRASTIVE_SIMILARITY_DOT;
  int status = contrastive_siglip_check(&params);
  if (status == CONTRASTIVE_SUCCESS) status = contrastive_siglip_saved_size(&params, saved_bytes);
  return status;
}
