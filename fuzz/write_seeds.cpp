// Writes the fuzzer's seed inputs (fuzz/fuzz_input.hpp's layout) for the C params structs as this
// build lays them out: every loss and operation with a valid small problem, aligned pointers, the
// exact workspace size and a null handle (so each seed reaches the last check, the handle's), and
// variants in bf16 / f16, symmetric, with tiles, strides and dot similarity; and per loss three
// with the params' header from the input (whole, struct_size too small, too large).
// fuzz/run_fuzz.cmake runs it before each fuzzing run, so the seeds follow the header when a field
// is added; fuzz/corpus holds what earlier runs found, in the same layout.
//
// usage: contrastive_fuzz_seeds DIRECTORY
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "contrastive/contrastive.h"
#include "fuzz/fuzz_input.hpp"

namespace {

using namespace contrastive_fuzz;

// Header mode kHeaderFromInit writes the params after their header; kHeaderFromInput all of
// them; kStructSizeFromInput `struct_size` and then the params after their header.
template <typename P>
std::vector<std::uint8_t> seed(Loss loss, Operation operation, const P& params,
                               std::size_t workspace_bytes, HeaderMode header_mode,
                               std::uint32_t struct_size) {
  std::vector<std::uint8_t> bytes = {static_cast<std::uint8_t>(loss),
                                     static_cast<std::uint8_t>(operation),
                                     static_cast<std::uint8_t>(header_mode << 4)};
  for (int slot = 0; slot < kSlots; ++slot) bytes.push_back(1);  // aligned
  for (int i = 0; i < 8; ++i)
    bytes.push_back(static_cast<std::uint8_t>(workspace_bytes >> (8 * i)));
  if (header_mode == kStructSizeFromInput) {
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<std::uint8_t>(struct_size >> (8 * i)));
  }
  const auto* raw = reinterpret_cast<const std::uint8_t*>(&params);
  const std::size_t skip = header_mode == kHeaderFromInput ? 0 : kParamsHeaderBytes;
  bytes.insert(bytes.end(), raw + skip, raw + sizeof params);
  return bytes;
}

bool write(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return false;
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  return std::fclose(file) == 0 && ok;
}

template <typename P, typename Size>
int write_all(const std::string& directory, const char* name, Loss loss,
              const std::vector<P>& variants, Size workspace_size) {
  int written = 0;
  for (std::size_t v = 0; v < variants.size(); ++v) {
    std::size_t workspace_bytes = 0;
    if (workspace_size(&variants[v], &workspace_bytes) != CONTRASTIVE_SUCCESS) {
      std::fprintf(stderr, "%s variant %zu: %s\n", name, v, contrastive_last_error());
      return -1;
    }
    for (int op = 0; op < kOperations; ++op) {
      const std::string path =
          directory + "/seed-" + name + "-" + std::to_string(v) + "-op" + std::to_string(op);
      if (!write(path, seed(loss, static_cast<Operation>(op), variants[v], workspace_bytes,
                            kHeaderFromInit, 0))) {
        std::fprintf(stderr, "cannot write %s\n", path.c_str());
        return -1;
      }
      ++written;
    }
  }
  // The first variant's forward with its whole struct in the input, and with struct_size one
  // 8-byte step smaller and larger than the library's.
  const P& first = variants.front();
  const std::uint32_t size = sizeof(P);
  const std::vector<std::uint8_t> header_seeds[] = {
      seed(loss, kForward, first, 0, kHeaderFromInput, 0),
      seed(loss, kForward, first, 0, kStructSizeFromInput, size - 8),
      seed(loss, kForward, first, 0, kStructSizeFromInput, size + 8)};
  for (std::size_t i = 0; i < sizeof header_seeds / sizeof header_seeds[0]; ++i) {
    const std::string path = directory + "/seed-" + name + "-header" + std::to_string(i);
    if (!write(path, header_seeds[i])) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return -1;
    }
    ++written;
  }
  return written;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
    return 2;
  }
  const std::string directory = argv[1];

  contrastive_infonce_params_t infonce;
  contrastive_infonce_params_init(&infonce);
  infonce.batch = 4;
  infonce.num_keys = 6;
  infonce.dim = 8;
  std::vector<contrastive_infonce_params_t> infonce_variants(4, infonce);
  infonce_variants[1].symmetric = 1;
  infonce_variants[1].positive_offset = 2;
  infonce_variants[1].dtype = CONTRASTIVE_DTYPE_BF16;
  infonce_variants[1].logits_dtype = CONTRASTIVE_DTYPE_BF16;
  infonce_variants[2].tile_rows = 3;
  infonce_variants[2].tile_cols = 4;
  infonce_variants[2].q_row_stride = 9;
  infonce_variants[3].similarity = CONTRASTIVE_SIMILARITY_DOT;
  infonce_variants[3].reduction = CONTRASTIVE_REDUCTION_NONE;
  infonce_variants[3].dtype = CONTRASTIVE_DTYPE_F16;

  contrastive_mnr_per_anchor_params_t per_anchor;
  contrastive_mnr_per_anchor_params_init(&per_anchor);
  per_anchor.batch = 3;
  per_anchor.negatives = 2;
  per_anchor.dim = 8;
  std::vector<contrastive_mnr_per_anchor_params_t> per_anchor_variants(3, per_anchor);
  per_anchor_variants[1].similarity = CONTRASTIVE_SIMILARITY_COSINE;
  per_anchor_variants[1].scale = 20.0f;
  per_anchor_variants[1].dtype = CONTRASTIVE_DTYPE_BF16;
  per_anchor_variants[2].negative_row_stride = 10;
  per_anchor_variants[2].reduction = CONTRASTIVE_REDUCTION_NONE;

  contrastive_mnr_in_batch_params_t in_batch;
  contrastive_mnr_in_batch_params_init(&in_batch);
  in_batch.batch = 4;
  in_batch.hard_negatives = 1;
  in_batch.dim = 8;
  std::vector<contrastive_mnr_in_batch_params_t> in_batch_variants(3, in_batch);
  in_batch_variants[1].symmetric = 1;
  in_batch_variants[1].dtype = CONTRASTIVE_DTYPE_F16;
  in_batch_variants[2].tile_rows = 2;
  in_batch_variants[2].tile_cols = 3;
  in_batch_variants[2].reduction = CONTRASTIVE_REDUCTION_SUM;

  contrastive_repel_params_t repel;
  contrastive_repel_params_init(&repel);
  repel.batch = 3;
  repel.negatives = 2;
  repel.dim = 8;
  std::vector<contrastive_repel_params_t> repel_variants(3, repel);
  repel_variants[1].mean_over_active = 1;
  repel_variants[1].dtype = CONTRASTIVE_DTYPE_BF16;
  repel_variants[2].reduction = CONTRASTIVE_REDUCTION_NONE;
  repel_variants[2].anchor_row_stride = 12;

  contrastive_siglip_params_t siglip;
  contrastive_siglip_params_init(&siglip);
  siglip.batch = 4;
  siglip.num_keys = 6;
  siglip.dim = 8;
  std::vector<contrastive_siglip_params_t> siglip_variants(4, siglip);
  siglip_variants[1].log_scale = 1;
  siglip_variants[1].scale = 2.3f;
  siglip_variants[1].positive_offset = 2;
  siglip_variants[1].dtype = CONTRASTIVE_DTYPE_BF16;
  siglip_variants[1].logits_dtype = CONTRASTIVE_DTYPE_BF16;
  siglip_variants[2].negatives_only = 1;
  siglip_variants[2].num_keys = 3;
  siglip_variants[2].tile_rows = 3;
  siglip_variants[2].tile_cols = 2;
  siglip_variants[3].similarity = CONTRASTIVE_SIMILARITY_DOT;  // nothing saved
  siglip_variants[3].reduction = CONTRASTIVE_REDUCTION_NONE;
  siglip_variants[3].dtype = CONTRASTIVE_DTYPE_F16;

  int total = 0;
  for (const int written :
       {write_all(directory, "infonce", kInfoNCE, infonce_variants,
                  contrastive_infonce_workspace_size),
        write_all(directory, "per_anchor", kPerAnchor, per_anchor_variants,
                  contrastive_mnr_per_anchor_workspace_size),
        write_all(directory, "in_batch", kInBatch, in_batch_variants,
                  contrastive_mnr_in_batch_workspace_size),
        write_all(directory, "repel", kRepel, repel_variants, contrastive_repel_workspace_size),
        write_all(directory, "siglip", kSigLIP, siglip_variants,
                  contrastive_siglip_workspace_size)}) {
    if (written < 0) return 1;
    total += written;
  }
  std::printf("wrote %d seeds to %s\n", total, directory.c_str());
  return 0;
}
