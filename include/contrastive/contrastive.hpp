// Umbrella header of the C++ API (the float64 reference is in contrastive/reference.hpp, the C API
// in contrastive/contrastive.h).
#pragma once

#include "contrastive/handle.hpp"
#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "contrastive/repel.hpp"
#include "contrastive/siglip.hpp"
#include "contrastive/status.hpp"
#include "contrastive/types.hpp"
