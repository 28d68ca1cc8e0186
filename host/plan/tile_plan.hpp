// Internal: how the B x M logits matrix is walked in tiles (DESIGN.md section 3). One tile covering
// the matrix is the materialized path; smaller tiles bound the scratch by the tile size.
#pragma once

#include <algorithm>
#include <cstdint>

namespace contrastive::detail {

struct Extent {
  std::int64_t begin = 0;
  std::int64_t size = 0;
};

struct TilePlan {
  std::int64_t rows = 0;       ///< B
  std::int64_t cols = 0;       ///< M
  std::int64_t tile_rows = 0;  ///< 1 <= tile_rows <= rows
  std::int64_t tile_cols = 0;  ///< 1 <= tile_cols <= cols

  std::int64_t row_tiles() const { return (rows + tile_rows - 1) / tile_rows; }
  std::int64_t col_tiles() const { return (cols + tile_cols - 1) / tile_cols; }
  bool single_tile() const { return row_tiles() == 1 && col_tiles() == 1; }

  Extent row_tile(std::int64_t index) const { return extent(index, tile_rows, rows); }
  Extent col_tile(std::int64_t index) const { return extent(index, tile_cols, cols); }

 private:
  static Extent extent(std::int64_t index, std::int64_t tile, std::int64_t total) {
    const std::int64_t begin = index * tile;
    return {begin, std::min(tile, total - begin)};
  }
};

/// Tile sizes requested as 0 (or larger than the matrix) cover the whole dimension.
inline TilePlan make_tile_plan(std::int64_t rows, std::int64_t cols, std::int64_t tile_rows,
                               std::int64_t tile_cols) {
  TilePlan plan;
  plan.rows = rows;
  plan.cols = cols;
  plan.tile_rows = (tile_rows <= 0 || tile_rows > rows) ? rows : tile_rows;
  plan.tile_cols = (tile_cols <= 0 || tile_cols > cols) ? cols : tile_cols;
  return plan;
}

}  // namespace contrastive::detail
