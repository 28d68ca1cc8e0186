/* What tests/c_api_previous_layout.c (a caller compiled against the header from before struct_size
 * and magic) reports to tests/api/c_api_abi_contract.cpp about one loss's calls. Valid C and C++.
 */
#ifndef CONTRASTIVE_TESTS_PREVIOUS_LAYOUT_CALLER_H_
#define CONTRASTIVE_TESTS_PREVIOUS_LAYOUT_CALLER_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { PREVIOUS_LAYOUT_MESSAGE_BYTES = 512 };

typedef struct previous_layout_result {
  size_t struct_bytes; /* sizeof the caller's params struct */
  int init_in_bounds;  /* 1: _params_init wrote nothing past the struct */
  int init_zeroed;     /* 1: it left every byte of the struct 0 */
  int check, workspace_size, saved_size, forward;   /* the statuses, each call refused */
  size_t bytes;                                     /* the size queries' output, 77 before them */
  char init_message[PREVIOUS_LAYOUT_MESSAGE_BYTES]; /* contrastive_last_error() after init */
  char forward_message[PREVIOUS_LAYOUT_MESSAGE_BYTES]; /* ... after the forward call */
} previous_layout_result;

void previous_layout_infonce(previous_layout_result* result);
void previous_layout_mnr_per_anchor(previous_layout_result* result);
void previous_layout_mnr_in_batch(previous_layout_result* result);
void previous_layout_repel(previous_layout_result* result);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CONTRASTIVE_TESTS_PREVIOUS_LAYOUT_CALLER_H_ */
