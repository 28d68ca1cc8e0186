/* A caller compiled against the C API header from before struct_size and magic
 * (tests/api/previous_header/contrastive/contrastive.h comes first on this file's include path):
 * its params structs are 8 bytes shorter and start with batch. It calls each loss the way that
 * header said to: _params_init, set the sizes, check, the size queries, forward (no handle, no
 * buffers). The library must never write past such a struct and must refuse every call with it. */
#include <string.h>

#include "api/previous_layout_caller.h"
#include "contrastive/contrastive.h"

enum { kGuardBytes = 64, kFill = 0xA5 };

static int all_bytes(const unsigned char* bytes, size_t count, unsigned char value) {
  size_t i;
  for (i = 0; i < count; ++i) {
    if (bytes[i] != value) return 0;
  }
  return 1;
}

static void copy_message(char* out) {
  strncpy(out, contrastive_last_error(), PREVIOUS_LAYOUT_MESSAGE_BYTES - 1);
  out[PREVIOUS_LAYOUT_MESSAGE_BYTES - 1] = '\0';
}

/* The struct with a guard band after it, filled before init. */
#define PREVIOUS_LAYOUT_INIT(type, init, result, s)                                        \
  do {                                                                                     \
    memset(&(s), kFill, sizeof(s));                                                        \
    init(&(s).params);                                                                     \
    copy_message((result)->init_message);                                                  \
    (result)->struct_bytes = sizeof(type);                                                 \
    (result)->init_in_bounds = all_bytes((s).guard, kGuardBytes, kFill);                   \
    (result)->init_zeroed = all_bytes((const unsigned char*)&(s).params, sizeof(type), 0); \
  } while (0)

void previous_layout_infonce(previous_layout_result* result) {
  struct {
    contrastive_infonce_params_t params;
    unsigned char guard[kGuardBytes];
  } s;
  PREVIOUS_LAYOUT_INIT(contrastive_infonce_params_t, contrastive_infonce_params_init, result, s);
  s.params.batch = 4;
  s.params.num_keys = 6;
  s.params.dim = 8;
  s.params.temperature = 0.1f;
  s.params.eps = 1e-12f;
  result->check = contrastive_infonce_check(&s.params);
  result->bytes = 77;
  result->workspace_size = contrastive_infonce_workspace_size(&s.params, &result->bytes);
  result->saved_size = contrastive_infonce_saved_size(&s.params, &result->bytes);
  result->forward =
      contrastive_infonce_forward(NULL, &s.params, NULL, NULL, NULL, NULL, NULL, 0, NULL);
  copy_message(result->forward_message);
}

void previous_layout_mnr_per_anchor(previous_layout_result* result) {
  struct {
    contrastive_mnr_per_anchor_params_t params;
    unsigned char guard[kGuardBytes];
  } s;
  PREVIOUS_LAYOUT_INIT(contrastive_mnr_per_anchor_params_t, contrastive_mnr_per_anchor_params_init,
                       result, s);
  s.params.batch = 4;
  s.params.negatives = 3;
  s.params.dim = 8;
  s.params.scale = 1.0f;
  s.params.eps = 1e-12f;
  result->check = contrastive_mnr_per_anchor_check(&s.params);
  result->bytes = 77;
  result->workspace_size = contrastive_mnr_per_anchor_workspace_size(&s.params, &result->bytes);
  result->saved_size = contrastive_mnr_per_anchor_saved_size(&s.params, &result->bytes);
  result->forward = contrastive_mnr_per_anchor_forward(NULL, &s.params, NULL, NULL, NULL, NULL,
                                                       NULL, NULL, 0, NULL);
  copy_message(result->forward_message);
}

void previous_layout_mnr_in_batch(previous_layout_result* result) {
  struct {
    contrastive_mnr_in_batch_params_t params;
    unsigned char guard[kGuardBytes];
  } s;
  PREVIOUS_LAYOUT_INIT(contrastive_mnr_in_batch_params_t, contrastive_mnr_in_batch_params_init,
                       result, s);
  s.params.batch = 4;
  s.params.hard_negatives = 1;
  s.params.dim = 8;
  s.params.scale = 20.0f;
  s.params.eps = 1e-12f;
  result->check = contrastive_mnr_in_batch_check(&s.params);
  result->bytes = 77;
  result->workspace_size = contrastive_mnr_in_batch_workspace_size(&s.params, &result->bytes);
  result->saved_size = contrastive_mnr_in_batch_saved_size(&s.params, &result->bytes);
  result->forward =
      contrastive_mnr_in_batch_forward(NULL, &s.params, NULL, NULL, NULL, NULL, NULL, 0, NULL);
  copy_message(result->forward_message);
}

void previous_layout_repel(previous_layout_result* result) {
  struct {
    contrastive_repel_params_t params;
    unsigned char guard[kGuardBytes];
  } s;
  PREVIOUS_LAYOUT_INIT(contrastive_repel_params_t, contrastive_repel_params_init, result, s);
  s.params.batch = 4;
  s.params.negatives = 3;
  s.params.dim = 8;
  s.params.margin = 0.3f;
  s.params.eps = 1e-12f;
  result->check = contrastive_repel_check(&s.params);
  result->bytes = 77;
  result->workspace_size = contrastive_repel_workspace_size(&s.params, &result->bytes);
  result->saved_size = contrastive_repel_saved_size(&s.params, &result->bytes);
  result->forward =
      contrastive_repel_forward(NULL, &s.params, NULL, NULL, NULL, NULL, NULL, 0, NULL);
  copy_message(result->forward_message);
}
