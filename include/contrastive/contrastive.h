/* C API over the same functions as the C++ headers, for callers from other languages (ctypes,
 * cffi, Rust, Julia ...). Every function returns an int status equal to contrastive::Status;
 * the message of the last failure on the calling thread is contrastive_last_error().
 * Pointers marked "device" are CUDA device pointers; streams are cudaStream_t.
 *
 * No function throws or lets an exception through (out of host memory is
 * CONTRASTIVE_INTERNAL_ERROR with a message). Each params struct starts with its size and a magic
 * value, both set by its _params_init(), which the library checks before reading anything else.
 * A CUDA error that the caller's own earlier work left pending on the thread makes a call return
 * CONTRASTIVE_CUDA_ERROR, saying so, with nothing launched and the error left pending.
 * docs/c-api.md gives the rules (statuses, messages, layouts and how they may grow). */
#ifndef CONTRASTIVE_CONTRASTIVE_H_
#define CONTRASTIVE_CONTRASTIVE_H_

#include <stddef.h>
#include <stdint.h>

#include "contrastive/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
#define CONTRASTIVE_NOEXCEPT noexcept
#else
#define CONTRASTIVE_NOEXCEPT
#endif

struct CUstream_st; /* cudaStream_t is struct CUstream_st* */

/* The first two fields of every params struct. _params_init() sets struct_size to the size of the
 * struct the caller was compiled with and magic to CONTRASTIVE_PARAMS_MAGIC; a struct with another
 * magic (not initialized, or laid out by a contrastive.h from before these fields) or a size the
 * library does not know is refused with CONTRASTIVE_INVALID_ARGUMENT (CONTRASTIVE_NOT_SUPPORTED
 * when it is larger than the library's: a newer header). reserved (and SigLIP's reserved_2) must
 * be 0. */
#define CONTRASTIVE_PARAMS_MAGIC 0x52544E43u /* "CNTR" in little-endian bytes */

enum {
  CONTRASTIVE_SUCCESS = 0,
  CONTRASTIVE_INVALID_ARGUMENT = 1,
  CONTRASTIVE_NULL_POINTER = 2,
  CONTRASTIVE_MISALIGNED_POINTER = 3,
  CONTRASTIVE_WORKSPACE_TOO_SMALL = 4,
  CONTRASTIVE_NOT_SUPPORTED = 5,
  CONTRASTIVE_INVALID_HANDLE = 6,
  CONTRASTIVE_WRONG_DEVICE = 7,
  CONTRASTIVE_NO_DEVICE = 8,
  CONTRASTIVE_CUDA_ERROR = 9,
  CONTRASTIVE_CUBLAS_ERROR = 10,
  CONTRASTIVE_INTERNAL_ERROR = 11
};

enum { CONTRASTIVE_DTYPE_F32 = 0, CONTRASTIVE_DTYPE_F16 = 1, CONTRASTIVE_DTYPE_BF16 = 2 };
enum {
  CONTRASTIVE_REDUCTION_MEAN = 0,
  CONTRASTIVE_REDUCTION_SUM = 1,
  CONTRASTIVE_REDUCTION_NONE = 2
};
enum { CONTRASTIVE_SIMILARITY_COSINE = 0, CONTRASTIVE_SIMILARITY_DOT = 1 };
/* contrastive::Tiling: the walk over the logits of InfoNCE and in-batch MNR */
enum {
  CONTRASTIVE_TILING_AUTO = 0,         /* materialized when it fits workspace_budget, else tiled */
  CONTRASTIVE_TILING_MATERIALIZED = 1, /* one tile */
  CONTRASTIVE_TILING_TILED = 2         /* L2-sized tiles: workspace O((B + M) D) */
};

/** Opaque handle; one per thread. */
typedef struct contrastive_handle* contrastive_handle_t;

/** Mirrors contrastive::infonce::Params; fill with contrastive_infonce_params_init() first. */
typedef struct contrastive_infonce_params {
  uint32_t struct_size;      /* set by _params_init() */
  uint32_t magic;            /* CONTRASTIVE_PARAMS_MAGIC, set by _params_init() */
  int64_t batch;             /* B */
  int64_t num_keys;          /* M >= B */
  int64_t dim;               /* D */
  int64_t positive_offset;   /* positive of row i is key i + offset */
  int64_t q_row_stride;      /* 0 means D */
  int64_t k_row_stride;      /* 0 means D */
  int64_t tile_rows;         /* an explicit tile, overriding tiling; 0 means B */
  int64_t tile_cols;         /* 0 means M */
  uint64_t workspace_budget; /* CONTRASTIVE_TILING_AUTO's limit in bytes (default 4 GiB) */
  uint64_t tile_cache_bytes; /* the tiled path's L2 share per tile; 0: 32 MiB */
  int32_t tiling;            /* CONTRASTIVE_TILING_* (default AUTO) */
  int32_t dtype;             /* CONTRASTIVE_DTYPE_* */
  int32_t similarity;        /* CONTRASTIVE_SIMILARITY_* */
  int32_t reduction;         /* CONTRASTIVE_REDUCTION_* */
  int32_t symmetric;         /* 0 or 1 */
  int32_t allow_tf32;        /* 0 or 1 */
  int32_t logits_dtype;      /* CONTRASTIVE_DTYPE_F32 (default), or _BF16 with bf16 inputs */
  float temperature;
  float eps;
  uint32_t reserved; /* 0; keeps the struct free of padding */
  /* Since the 144-byte layout (an older caller's struct gets the defaults: 0, 0, null). */
  int32_t log_scale;               /* 0 or 1: temperature holds theta, the logit scale is exp(theta)
                                      (CLIP's logit_scale); grad_temperature is dLoss/dtheta */
  float max_scale;                 /* > 0: the logit scale is clamped at it; 0: no clamp */
  const float* temperature_device; /* device (1) or null: the temperature (theta with log_scale)
                                      read on the stream instead of `temperature` */
} contrastive_infonce_params_t;

CONTRASTIVE_API const char* contrastive_status_string(int status) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API const char* contrastive_last_error(void) CONTRASTIVE_NOEXCEPT;

/** device: a CUDA ordinal, or -1 for the current device. Without a GPU: CONTRASTIVE_NO_DEVICE. */
CONTRASTIVE_API int contrastive_create(contrastive_handle_t* handle,
                                       int device) CONTRASTIVE_NOEXCEPT;
/** Destroying null is a no-op; destroying twice returns CONTRASTIVE_INVALID_HANDLE. */
CONTRASTIVE_API int contrastive_destroy(contrastive_handle_t handle) CONTRASTIVE_NOEXCEPT;

/** Sets the defaults of the C++ Params (sizes 0: set them), struct_size and magic. struct_size
 *  is the size of the caller's struct: the macro passes sizeof as the caller was compiled; a caller
 *  through an FFI passes its own. Null params or an unknown size: an error, nothing written. */
CONTRASTIVE_API int contrastive_infonce_params_init_sized(contrastive_infonce_params_t* params,
                                                          size_t struct_size) CONTRASTIVE_NOEXCEPT;
#define contrastive_infonce_params_init(params) \
  contrastive_infonce_params_init_sized((params), sizeof(contrastive_infonce_params_t))
CONTRASTIVE_API int contrastive_infonce_check(const contrastive_infonce_params_t* params)
    CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_infonce_workspace_size(const contrastive_infonce_params_t* params,
                                                       size_t* bytes) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_infonce_saved_size(const contrastive_infonce_params_t* params,
                                                   size_t* bytes) CONTRASTIVE_NOEXCEPT;

/** q (B, q_row_stride), k (M, k_row_stride): device, dtype. loss: device (1) or (B). saved: device.
 */
CONTRASTIVE_API int contrastive_infonce_forward(contrastive_handle_t handle,
                                                const contrastive_infonce_params_t* params,
                                                const void* q, const void* k, float* loss,
                                                void* saved, void* workspace,
                                                size_t workspace_bytes,
                                                struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;

/** grad_loss: device (1) or (B), or null for 1. grad_q (B, D), grad_k (M, D), grad_temperature (1):
 *  device, each may be null to skip it (not all three). */
CONTRASTIVE_API int contrastive_infonce_backward(contrastive_handle_t handle,
                                                 const contrastive_infonce_params_t* params,
                                                 const void* q, const void* k, const void* saved,
                                                 const float* grad_loss, void* grad_q, void* grad_k,
                                                 float* grad_temperature, void* workspace,
                                                 size_t workspace_bytes,
                                                 struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;

CONTRASTIVE_API int contrastive_infonce_forward_backward(
    contrastive_handle_t handle, const contrastive_infonce_params_t* params, const void* q,
    const void* k, float* loss, void* saved, const float* grad_loss, void* grad_q, void* grad_k,
    float* grad_temperature, void* workspace, size_t workspace_bytes,
    struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;

/* ---- MNR, per-anchor negatives (mirrors contrastive::mnr::PerAnchorParams) ---- */
typedef struct contrastive_mnr_per_anchor_params {
  uint32_t struct_size;        /* set by _params_init() */
  uint32_t magic;              /* CONTRASTIVE_PARAMS_MAGIC, set by _params_init() */
  int64_t batch;               /* B */
  int64_t negatives;           /* n per anchor */
  int64_t dim;                 /* D */
  int64_t anchor_row_stride;   /* 0 means D */
  int64_t positive_row_stride; /* 0 means D */
  int64_t negative_row_stride; /* 0 means D */
  int32_t dtype;
  int32_t similarity; /* default dot */
  int32_t reduction;
  float scale; /* default 1 */
  float eps;
  uint32_t reserved; /* 0; keeps the struct free of padding */
  /* Since the 88-byte layout (an older caller's struct gets the default: null). */
  const float* scale_device; /* device (1) or null: the scale read on the stream */
} contrastive_mnr_per_anchor_params_t;

/** Sets the defaults of the C++ PerAnchorParams (sizes 0: set them), struct_size and magic.
 * struct_size is the size of the caller's struct: the macro passes sizeof as the caller was
 * compiled; a caller through an FFI passes its own. Null params or an unknown size: an error,
 * nothing written. */
CONTRASTIVE_API int contrastive_mnr_per_anchor_params_init_sized(
    contrastive_mnr_per_anchor_params_t* params, size_t struct_size) CONTRASTIVE_NOEXCEPT;
#define contrastive_mnr_per_anchor_params_init(params)   \
  contrastive_mnr_per_anchor_params_init_sized((params), \
                                               sizeof(contrastive_mnr_per_anchor_params_t))
CONTRASTIVE_API int contrastive_mnr_per_anchor_check(
    const contrastive_mnr_per_anchor_params_t* params) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_mnr_per_anchor_workspace_size(
    const contrastive_mnr_per_anchor_params_t* params, size_t* bytes) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_mnr_per_anchor_saved_size(
    const contrastive_mnr_per_anchor_params_t* params, size_t* bytes) CONTRASTIVE_NOEXCEPT;
/** anchors (B, D), positives (B, D), negatives (B * n, D): device. */
CONTRASTIVE_API int contrastive_mnr_per_anchor_forward(
    contrastive_handle_t handle, const contrastive_mnr_per_anchor_params_t* params,
    const void* anchors, const void* positives, const void* negatives, float* loss, void* saved,
    void* workspace, size_t workspace_bytes, struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_mnr_per_anchor_backward(
    contrastive_handle_t handle, const contrastive_mnr_per_anchor_params_t* params,
    const void* anchors, const void* positives, const void* negatives, const void* saved,
    const float* grad_loss, void* grad_anchors, void* grad_positives, void* grad_negatives,
    float* grad_scale, void* workspace, size_t workspace_bytes,
    struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_mnr_per_anchor_forward_backward(
    contrastive_handle_t handle, const contrastive_mnr_per_anchor_params_t* params,
    const void* anchors, const void* positives, const void* negatives, float* loss, void* saved,
    const float* grad_loss, void* grad_anchors, void* grad_positives, void* grad_negatives,
    float* grad_scale, void* workspace, size_t workspace_bytes,
    struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;

/* ---- MNR, in-batch with hard negatives (mirrors contrastive::mnr::InBatchParams) ---- */
typedef struct contrastive_mnr_in_batch_params {
  uint32_t struct_size;         /* set by _params_init() */
  uint32_t magic;               /* CONTRASTIVE_PARAMS_MAGIC, set by _params_init() */
  int64_t batch;                /* B */
  int64_t hard_negatives;       /* K >= 0 */
  int64_t dim;                  /* D */
  int64_t anchor_row_stride;    /* 0 means D */
  int64_t candidate_row_stride; /* 0 means D */
  int64_t tile_rows;            /* an explicit tile, overriding tiling; 0: whole */
  int64_t tile_cols;
  uint64_t workspace_budget; /* as in contrastive_infonce_params_t */
  uint64_t tile_cache_bytes;
  int32_t tiling;
  int32_t dtype;
  int32_t similarity; /* default cosine */
  int32_t reduction;
  int32_t symmetric;
  int32_t allow_tf32;
  int32_t logits_dtype; /* CONTRASTIVE_DTYPE_F32 (default), or _BF16 with bf16 inputs */
  float scale;          /* default 20 */
  float eps;
  uint32_t reserved; /* 0; keeps the struct free of padding */
  /* Since the 136-byte layout (an older caller's struct gets the defaults: 0, 0, null). */
  int32_t log_scale;         /* 0 or 1: scale holds log(scale); grad_scale is dLoss/dlog(scale) */
  float max_scale;           /* > 0: the scale is clamped at it; 0: no clamp */
  const float* scale_device; /* device (1) or null: the scale read on the stream */
} contrastive_mnr_in_batch_params_t;

/** Sets the defaults of the C++ InBatchParams (sizes 0: set them), struct_size and magic.
 * struct_size is the size of the caller's struct: the macro passes sizeof as the caller was
 * compiled; a caller through an FFI passes its own. Null params or an unknown size: an error,
 * nothing written. */
CONTRASTIVE_API int contrastive_mnr_in_batch_params_init_sized(
    contrastive_mnr_in_batch_params_t* params, size_t struct_size) CONTRASTIVE_NOEXCEPT;
#define contrastive_mnr_in_batch_params_init(params) \
  contrastive_mnr_in_batch_params_init_sized((params), sizeof(contrastive_mnr_in_batch_params_t))
CONTRASTIVE_API int contrastive_mnr_in_batch_check(const contrastive_mnr_in_batch_params_t* params)
    CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_mnr_in_batch_workspace_size(
    const contrastive_mnr_in_batch_params_t* params, size_t* bytes) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_mnr_in_batch_saved_size(
    const contrastive_mnr_in_batch_params_t* params, size_t* bytes) CONTRASTIVE_NOEXCEPT;
/** anchors (B, D), candidates ((1 + K) B, D): device. */
CONTRASTIVE_API int contrastive_mnr_in_batch_forward(
    contrastive_handle_t handle, const contrastive_mnr_in_batch_params_t* params,
    const void* anchors, const void* candidates, float* loss, void* saved, void* workspace,
    size_t workspace_bytes, struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_mnr_in_batch_backward(
    contrastive_handle_t handle, const contrastive_mnr_in_batch_params_t* params,
    const void* anchors, const void* candidates, const void* saved, const float* grad_loss,
    void* grad_anchors, void* grad_candidates, float* grad_scale, void* workspace,
    size_t workspace_bytes, struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_mnr_in_batch_forward_backward(
    contrastive_handle_t handle, const contrastive_mnr_in_batch_params_t* params,
    const void* anchors, const void* candidates, float* loss, void* saved, const float* grad_loss,
    void* grad_anchors, void* grad_candidates, float* grad_scale, void* workspace,
    size_t workspace_bytes, struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;

/* ---- Repel (mirrors contrastive::repel::Params) ---- */
typedef struct contrastive_repel_params {
  uint32_t struct_size;        /* set by _params_init() */
  uint32_t magic;              /* CONTRASTIVE_PARAMS_MAGIC, set by _params_init() */
  int64_t batch;               /* B */
  int64_t negatives;           /* N per anchor */
  int64_t dim;                 /* D */
  int64_t anchor_row_stride;   /* 0 means D */
  int64_t negative_row_stride; /* 0 means D */
  int32_t dtype;
  int32_t reduction;
  int32_t mean_over_active;
  float margin; /* default 0.3 */
  float eps;
  uint32_t reserved; /* 0; keeps the struct free of padding */
} contrastive_repel_params_t;

/** Sets the defaults of the C++ Params (sizes 0: set them), struct_size and magic. struct_size
 *  is the size of the caller's struct: the macro passes sizeof as the caller was compiled; a caller
 *  through an FFI passes its own. Null params or an unknown size: an error, nothing written. */
CONTRASTIVE_API int contrastive_repel_params_init_sized(contrastive_repel_params_t* params,
                                                        size_t struct_size) CONTRASTIVE_NOEXCEPT;
#define contrastive_repel_params_init(params) \
  contrastive_repel_params_init_sized((params), sizeof(contrastive_repel_params_t))
CONTRASTIVE_API int contrastive_repel_check(const contrastive_repel_params_t* params)
    CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_repel_workspace_size(const contrastive_repel_params_t* params,
                                                     size_t* bytes) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_repel_saved_size(const contrastive_repel_params_t* params,
                                                 size_t* bytes) CONTRASTIVE_NOEXCEPT;
/** anchors (B, D), negatives (B * N, D): device. loss: (1), or (B, N) for reduction none. */
CONTRASTIVE_API int contrastive_repel_forward(contrastive_handle_t handle,
                                              const contrastive_repel_params_t* params,
                                              const void* anchors, const void* negatives,
                                              float* loss, void* saved, void* workspace,
                                              size_t workspace_bytes,
                                              struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_repel_backward(contrastive_handle_t handle,
                                               const contrastive_repel_params_t* params,
                                               const void* anchors, const void* negatives,
                                               const void* saved, const float* grad_loss,
                                               void* grad_anchors, void* grad_negatives,
                                               void* workspace, size_t workspace_bytes,
                                               struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_repel_forward_backward(
    contrastive_handle_t handle, const contrastive_repel_params_t* params, const void* anchors,
    const void* negatives, float* loss, void* saved, const float* grad_loss, void* grad_anchors,
    void* grad_negatives, void* workspace, size_t workspace_bytes,
    struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;

/* ---- SigLIP's pairwise sigmoid loss (mirrors contrastive::siglip::Params) ---- */
typedef struct contrastive_siglip_params {
  uint32_t struct_size;    /* set by _params_init() */
  uint32_t magic;          /* CONTRASTIVE_PARAMS_MAGIC, set by _params_init() */
  int64_t batch;           /* B */
  int64_t num_keys;        /* M >= B (>= 1 with negatives_only) */
  int64_t dim;             /* D */
  int64_t positive_offset; /* positive of row i is key i + offset */
  int64_t q_row_stride;    /* 0 means D */
  int64_t k_row_stride;    /* 0 means D */
  int64_t tile_rows;       /* an explicit tile, overriding tiling; 0: whole */
  int64_t tile_cols;
  uint64_t workspace_budget; /* as in contrastive_infonce_params_t */
  uint64_t tile_cache_bytes;
  int32_t tiling;
  int32_t dtype;
  int32_t similarity;     /* default cosine */
  int32_t reduction;      /* default mean over rows */
  int32_t log_scale;      /* 0 or 1: scale holds log t, grad_scale is dLoss/dlog t */
  int32_t negatives_only; /* 0 or 1: every label is 0 */
  int32_t allow_tf32;
  int32_t logits_dtype; /* CONTRASTIVE_DTYPE_F32 (default), or _BF16 with bf16 inputs */
  float scale;          /* t, default 10 (or log t with log_scale) */
  float bias;           /* b, default -10 */
  float eps;
  uint32_t reserved; /* 0; keeps the struct free of padding */
  /* Since the 160-byte layout (an older caller's struct gets the defaults: 0, 0, null, null). */
  float max_scale;           /* > 0: t is clamped at it; 0: no clamp */
  uint32_t reserved_2;       /* 0 */
  const float* scale_device; /* device (1) or null: the scale (log t with log_scale) read on the
                                stream instead of `scale` */
  const float* bias_device;  /* device (1) or null: the bias read on the stream */
} contrastive_siglip_params_t;

/** Sets the defaults of the C++ siglip::Params (sizes 0: set them), struct_size and magic.
 * struct_size is the size of the caller's struct (the macro passes sizeof). */
CONTRASTIVE_API int contrastive_siglip_params_init_sized(contrastive_siglip_params_t* params,
                                                         size_t struct_size) CONTRASTIVE_NOEXCEPT;
#define contrastive_siglip_params_init(params) \
  contrastive_siglip_params_init_sized((params), sizeof(contrastive_siglip_params_t))
CONTRASTIVE_API int contrastive_siglip_check(const contrastive_siglip_params_t* params)
    CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_siglip_workspace_size(const contrastive_siglip_params_t* params,
                                                      size_t* bytes) CONTRASTIVE_NOEXCEPT;
/** 0 bytes with dot similarity: saved may then be null. */
CONTRASTIVE_API int contrastive_siglip_saved_size(const contrastive_siglip_params_t* params,
                                                  size_t* bytes) CONTRASTIVE_NOEXCEPT;
/** q (B, D), k (M, D): device. loss: (1), or (B) for reduction none. */
CONTRASTIVE_API int contrastive_siglip_forward(contrastive_handle_t handle,
                                               const contrastive_siglip_params_t* params,
                                               const void* q, const void* k, float* loss,
                                               void* saved, void* workspace, size_t workspace_bytes,
                                               struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;
/** grad_q, grad_k, grad_scale, grad_bias: each may be null to skip it (not all four). */
CONTRASTIVE_API int contrastive_siglip_backward(contrastive_handle_t handle,
                                                const contrastive_siglip_params_t* params,
                                                const void* q, const void* k, const void* saved,
                                                const float* grad_loss, void* grad_q, void* grad_k,
                                                float* grad_scale, float* grad_bias,
                                                void* workspace, size_t workspace_bytes,
                                                struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;
CONTRASTIVE_API int contrastive_siglip_forward_backward(
    contrastive_handle_t handle, const contrastive_siglip_params_t* params, const void* q,
    const void* k, float* loss, void* saved, const float* grad_loss, void* grad_q, void* grad_k,
    float* grad_scale, float* grad_bias, void* workspace, size_t workspace_bytes,
    struct CUstream_st* stream) CONTRASTIVE_NOEXCEPT;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CONTRASTIVE_CONTRASTIVE_H_ */
