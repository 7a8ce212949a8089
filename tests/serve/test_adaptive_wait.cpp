// The batcher's adaptive wait rule (adaptive_wait.h), step by step without threads or clocks.
#include "serve/adaptive_wait.h"

#include <gtest/gtest.h>

using moe::serve::AdaptiveWait;

TEST(AdaptiveWait, ALoneClientNeverWaits) {
  AdaptiveWait w;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(w.target(), 1u);
    w.ran(1);
  }
}

TEST(AdaptiveWait, WaitsForAsManyAsTheLastRunJoined) {
  AdaptiveWait w;
  w.ran(4);
  EXPECT_EQ(w.target(), 4u);
  w.waited(true);
  w.ran(7);
  EXPECT_EQ(w.target(), 7u);
}

// Waits that gather nobody are skipped 1, 2, 4 ... 64 times in turn; one that gathers ends the back-off.
TEST(AdaptiveWait, WaitsThatGatherNobodyBackOff) {
  AdaptiveWait w;
  w.ran(2);
  size_t skipped_in_a_row = 0;
  std::vector<size_t> skips;
  for (int wait = 0; wait < 9; ++wait) {
    size_t skipped = 0;
    while (w.target() == 1) ++skipped;  // each skipped batch runs at once
    skips.push_back(skipped);
    w.waited(false);  // the wait ran out with nobody joining
    w.ran(2);
    skipped_in_a_row = skipped;
  }
  EXPECT_EQ(skips, (std::vector<size_t>{0, 1, 2, 4, 8, 16, 32, 64, 64}));
  EXPECT_EQ(skipped_in_a_row, size_t(AdaptiveWait::kMaxSkipped));
  // Someone joined: the next wait after the pending skips comes at once again after it.
  while (w.target() == 1) {
  }
  w.waited(true);
  EXPECT_EQ(w.target(), 2u);
  w.waited(false);
  EXPECT_EQ(w.target(), 1u);  // one skip
  EXPECT_EQ(w.target(), 2u);
}
