// What the service tests share: the random model they serve, reference engines for it, and the
// options of a test server (a free loopback HTTP port, small request limits). One definition, so
// every test file serves the same model under the same limits.
#pragma once
#include <memory>
#include <vector>

#include "model/reference.h"
#include "random_model.h"
#include "serve/service.h"

namespace moe::test {

inline const Checkpoint& served_checkpoint() {
  static const Checkpoint ck = random_checkpoint(ModelConfig{}, 11);
  return ck;
}

// `n` engines running the hand-written reference forward pass of served_checkpoint().
inline std::vector<std::unique_ptr<Classifier>> reference_engines(int n) {
  std::vector<std::unique_ptr<Classifier>> v;
  for (int i = 0; i < n; ++i) v.push_back(std::make_unique<ReferenceClassifier>(served_checkpoint()));
  return v;
}

// HTTP on a free port, no gRPC (a test that wants it sets grpc.port = 0), at most 16 images a request.
inline serve::ServiceOptions service_options() {
  serve::ServiceOptions o;
  o.http.port = 0;
  o.model.max_batch_request = 16;
  return o;
}

}  // namespace moe::test
