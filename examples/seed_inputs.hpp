// The demo's inputs, the same as python -m contrastive.demo draws them, bit for bit: NumPy's
// legacy global generator (np.random.seed / rand / randn: MT19937 with 53-bit doubles and the
// polar Gaussian). docs/python.md says where the three examples come from.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace contrastive::seed {

/// np.random.seed(seed) followed by np.random.rand / np.random.randn calls.
class NumpyLegacyRandom {
 public:
  explicit NumpyLegacyRandom(std::uint32_t seed) : engine_(seed) {}

  /// np.random.rand(): a double in [0, 1) from two 32-bit draws.
  double uniform();
  /// np.random.randn(): polar Box-Muller, the second value of each pair cached.
  double normal();

  std::vector<double> uniform(std::size_t count);
  std::vector<double> normal(std::size_t count);

 private:
  std::mt19937 engine_;
  bool has_cached_normal_ = false;
  double cached_normal_ = 0.0;
};

/// InfoNCE: np.random.seed(0); z1 = randn(6, 8); z2 = z1 + 0.1 * randn(6, 8).
struct InfoNCEInputs {
  static constexpr int kBatch = 6;
  static constexpr int kDim = 8;
  static constexpr float kTemperature = 0.1f;
  std::vector<double> z1;  // (6, 8)
  std::vector<double> z2;  // (6, 8)
};
InfoNCEInputs infonce_inputs();

/// MNR: np.random.seed(42); anchor = rand(4); positive = rand(4); negatives = rand(3, 4).
struct MnrInputs {
  static constexpr int kNegatives = 3;
  static constexpr int kDim = 4;
  std::vector<double> anchor;     // (4)
  std::vector<double> positive;   // (4)
  std::vector<double> negatives;  // (3, 4)
};
MnrInputs mnr_inputs();

/// Repel (B = 2, N = 3, D = 4, margin 0.3): np.random.seed(0); user = randn(2, 4);
/// items = randn(2, 3, 4).
struct RepelInputs {
  static constexpr int kBatch = 2;
  static constexpr int kNegatives = 3;
  static constexpr int kDim = 4;
  static constexpr float kMargin = 0.3f;
  std::vector<double> users;  // (2, 4)
  std::vector<double> items;  // (2, 3, 4)
};
RepelInputs repel_inputs();

}  // namespace contrastive::seed
