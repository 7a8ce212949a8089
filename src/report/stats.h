// Order statistics for timings.
#pragma once
#include <vector>

namespace moe {

// q-quantile (0..1) with linear interpolation between order statistics; 0 for an empty sample.
double quantile(std::vector<double> v, double q);
inline double median(const std::vector<double>& v) { return quantile(v, 0.5); }

}  // namespace moe
