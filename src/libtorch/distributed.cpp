#include "libtorch/distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "base/errors.h"

namespace moe {

namespace {

using Clock = std::chrono::steady_clock;

std::string first_line(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  // c10 errors start with the C++ source location of the throw; keep what the reader needs.
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

HostPort parse_master(const std::string& s) {
  const auto colon = s.rfind(':');
  HostPort hp;
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    throw InputError("--master: expected ADDR:PORT (e.g. 10.0.0.1:29500), got '" + s + "'");
  hp.host = s.substr(0, colon);
  if (hp.host.size() > 2 && hp.host.front() == '[' && hp.host.back() == ']') hp.host = hp.host.substr(1, hp.host.size() - 2);
  char* end = nullptr;
  const long port = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port < 1 || port > 65535)
    throw InputError("--master: the port must be 1..65535, got '" + s.substr(colon + 1) + "'");
  hp.port = static_cast<uint16_t>(port);
  return hp;
}

bool is_loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

// The local address this machine sends from to reach `host`: connecting a UDP socket sends nothing, it
// only asks the kernel's routing table. "" when the host does not resolve or has no route.
std::string local_address_towards(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), "9", &hints, &found) != 0 || !found) return "";
  std::string address;
  for (addrinfo* a = found; a && address.empty(); a = a->ai_next) {
    const int fd = ::socket(a->ai_family, SOCK_DGRAM, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    char text[INET6_ADDRSTRLEN] = {};
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      const void* in = local.ss_family == AF_INET ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr)
                                                  : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
      if (::inet_ntop(local.ss_family, in, text, sizeof text)) address = text;
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return address;
}

// Gloo's own sockets: loopback when the master is local (a single machine); otherwise the interface
// named by GLOO_SOCKET_IFNAME (as in PyTorch), else the address this machine reaches the master from
// (Gloo's default, the address the hostname resolves to, is often loopback: measured in two network
// namespaces, each rank then waited for the other on 127.0.0.1 until --dist-timeout), else Gloo's default.
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_host) {
  if (is_loopback(master_host)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  if (const std::string local = local_address_towards(master_host); !local.empty() && !is_loopback(local))
    return c10d::ProcessGroupGloo::createDeviceForHostname(local);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// FNV-1a over 64-bit words (then the tail bytes): a fingerprint for comparing tensors across ranks,
// one multiply per 8 bytes so the 172 MB of training pixels hash quickly; not a cryptographic hash.
std::string hash_tensor(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  const auto* bytes = static_cast<const uint8_t*>(c.data_ptr());
  const size_t n = c.numel() * c.element_size();
  uint64_t h = 1469598103934665603ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes + i, 8);
    h = (h ^ w) * 1099511628211ULL;
  }
  for (; i < n; ++i) h = (h ^ bytes[i]) * 1099511628211ULL;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::vector<uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }

// "training.lr (0.001 here, 0.002 there)": the first field, alphabetically and depth first, where
// `mine` and `theirs` differ.
std::string first_difference(const nlohmann::json& mine, const nlohmann::json& theirs, const std::string& path) {
  if (mine.is_object() && theirs.is_object()) {
    for (const auto& [key, value] : mine.items()) {
      const std::string at = path.empty() ? key : path + "." + key;
      if (!theirs.contains(key)) return at + " (" + value.dump() + " here, absent there)";
      if (theirs[key] != value) return first_difference(value, theirs[key], at);
    }
    for (const auto& [key, value] : theirs.items())
      if (!mine.contains(key)) return (path.empty() ? key : path + "." + key) + " (absent here, " + value.dump() + " there)";
  }
  std::string a = mine.dump(), b = theirs.dump();
  for (std::string* v : {&a, &b})
    if (v->size() > 80) *v = v->substr(0, 77) + "...";
  return path + " (" + a + " here, " + b + " there)";
}

}  // namespace

DataParallel::DataParallel(const DistOptions& o)
    : rank_(o.rank), world_size_(o.world_size), timeout_s_(o.timeout_s), master_(o.master) {
  if (world_size_ < 2) throw InputError("--world-size must be >= 2 for data-parallel training, got " + std::to_string(world_size_));
  if (rank_ < 0 || rank_ >= world_size_)
    throw InputError("--rank must be 0.." + std::to_string(world_size_ - 1) + " for --world-size " + std::to_string(world_size_) +
                     ", got " + std::to_string(rank_));
  if (!(timeout_s_ > 0)) throw InputError("--dist-timeout must be > 0 seconds");
  const HostPort hp = parse_master(o.master);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s_ * 1000));
  const std::string waited = " within --dist-timeout " + std::to_string(static_cast<int64_t>(timeout_s_)) + " s";

  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions so;
    so.port = hp.port;
    so.isServer = rank_ == 0;
    so.numWorkers = world_size_;
    so.waitWorkers = false;  // its own wait gives up silently; the arrival count below says who is missing
    so.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(hp.host, so);
  } catch (const std::exception& e) {
    if (rank_ == 0)
      throw InputError("rank 0: cannot listen at " + o.master + " for the other ranks (is the port in use?): " + first_line(e.what()));
    throw InputError("rank " + std::to_string(rank_) + ": cannot reach the master (rank 0) at " + o.master + waited +
                     " (is rank 0 running, and is the port open?): " + first_line(e.what()));
  }
  // Every rank counts itself in, then waits (within the timeout) until all have, so that a missing
  // rank is reported as such rather than as a socket timeout inside Gloo.
  try {
    const auto deadline = Clock::now() + timeout;
    if (store->add("rank" + std::to_string(rank_) + "/claims", 1) > 1)
      throw InputError("rank " + std::to_string(rank_) + ": another process already joined " + o.master + " as --rank " +
                       std::to_string(rank_) + " (give each process its own rank, 0.." + std::to_string(world_size_ - 1) + ")");
    int64_t arrived = store->add("arrived", 1);
    while (arrived < world_size_) {
      if (Clock::now() > deadline)
        throw InputError("rank " + std::to_string(rank_) + ": only " + std::to_string(arrived) + " of " +
                         std::to_string(world_size_) + " ranks arrived at " + o.master + waited +
                         " (are the others started, with the same --master and --world-size?)");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      arrived = store->add("arrived", 0);
    }
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError("rank " + std::to_string(rank_) + ": lost the master (rank 0) at " + o.master +
                     " while waiting for the other ranks: " + first_line(e.what()));
  }
  try {
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    opts->devices.push_back(gloo_device(hp.host));
    opts->threads = 1;  // one collective at a time: the trainer waits for each
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo", store), rank_,
                                                          world_size_, opts);
  } catch (const std::exception& e) {
    throw InputError("rank " + std::to_string(rank_) + ": Gloo could not connect every pair of ranks" + waited + ": " +
                     first_line(e.what()));
  }
  store_ = c10::make_intrusive<c10d::PrefixStore>("check", store);
}

DataParallel::~DataParallel() = default;

void DataParallel::check_same(const nlohmann::json& fingerprint) {
  store_->set("rank" + std::to_string(rank_), to_bytes(fingerprint.dump()));
  std::string mismatch;
  for (int r = 0; r < world_size_ && mismatch.empty(); ++r) {
    if (r == rank_) continue;
    std::vector<uint8_t> got;
    try {
      got = store_->get("rank" + std::to_string(r));  // waits for rank r (up to the store's timeout)
    } catch (const std::exception& e) {
      throw InputError("rank " + std::to_string(rank_) + ": rank " + std::to_string(r) + " did not publish its settings: " +
                       first_line(e.what()));
    }
    const nlohmann::json theirs = nlohmann::json::parse(got.begin(), got.end());
    if (theirs != fingerprint)
      mismatch = "rank " + std::to_string(rank_) + " and rank " + std::to_string(r) + " differ in " + first_difference(fingerprint, theirs, "");
  }
  // Nobody leaves before everyone has compared, so each rank can say why (rank 0 hosts the store).
  try {
    const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s_ * 1000));
    for (int64_t done = store_->add("compared", 1); done < world_size_ && Clock::now() < deadline;
         done = store_->add("compared", 0))
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  } catch (const std::exception&) {
    if (mismatch.empty()) throw InputError("rank " + std::to_string(rank_) + ": lost the master while comparing settings");
  }
  if (!mismatch.empty())
    throw InputError(mismatch + ": every rank must train the same model on the same data with the same settings; refusing to start");
}

std::pair<int64_t, int64_t> DataParallel::shard(int64_t n_rows) const {
  const int64_t begin = n_rows * rank_ / world_size_, end = n_rows * (rank_ + 1) / world_size_;
  return {begin, end - begin};
}

void DataParallel::allreduce_sum(torch::Tensor& t, const char* what) {
  const auto t0 = Clock::now();
  try {
    std::vector<at::Tensor> tensors{t};
    group_->allreduce(tensors)->wait();
  } catch (const std::exception& e) {
    throw InputError("rank " + std::to_string(rank_) + ": the all-reduce of " + what + " at step " + std::to_string(n_steps_ + 1) +
                     " failed: another rank died, was stopped, or did not answer within --dist-timeout " +
                     std::to_string(static_cast<int64_t>(timeout_s_)) + " s (" + first_line(e.what()) + ")");
  }
  comm_seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
}

torch::Tensor DataParallel::shard_loss(const NetOutput& out, const torch::Tensor& labels, int64_t n_global,
                                       const ModelConfig& config, double* value_part, double label_smoothing) {
  // Mean over the global batch = this rank's sum / n_global, summed over ranks by the all-reduce.
  torch::Tensor ce =
      torch::cross_entropy_loss(out.logits, labels, {}, at::Reduction::Sum, -100, label_smoothing) / double(n_global);
  double value = ce.item<double>();
  torch::Tensor loss = ce;
  if (config.n_experts > 1 && config.w_importance != 0) {
    torch::Tensor local = out.moe.gate_probs.sum(0);  // [E] this rank's rows
    torch::Tensor global = local.detach().to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);
    allreduce_sum(global, "the expert importance");  // on the CPU: Gloo's transport, and a CUDA LibTorch's tensors too
    global = global.to(local.device());
    // Value: the global importance (local - local.detach() is exactly 0); gradient: through this
    // rank's rows only, so the ranks' gradients add up to the gradient of the global batch's loss.
    torch::Tensor importance = global + (local - local.detach());
    // The same formula as MoEImpl::forward's importance loss (w * CV^2, unbiased std).
    torch::Tensor imp_loss = config.w_importance * (importance.std() / importance.mean()).pow(2);
    if (is_root()) value += imp_loss.item<double>();
    loss = loss + imp_loss;
  }
  *value_part = value;
  return loss;
}

StepSums DataParallel::sum_gradients(torch::Tensor& grads, double loss_part, bool stop) {
  const int64_t n = grads.numel();
  if (!step_buffer_.defined() || step_buffer_.numel() != n + 2) step_buffer_ = torch::empty({n + 2}, torch::kFloat);  // CPU
  torch::NoGradGuard no_grad;
  step_buffer_.narrow(0, 0, n).copy_(grads);
  float* tail = step_buffer_.data_ptr<float>() + n;
  tail[0] = static_cast<float>(loss_part);
  tail[1] = stop ? 1.0f : 0.0f;
  allreduce_sum(step_buffer_, "the gradients");
  grads.copy_(step_buffer_.narrow(0, 0, n));
  ++n_steps_;
  return {double(tail[0]), tail[1] > 0.5f};
}

bool DataParallel::root_decides(bool flag) {
  torch::Tensor t = torch::full({1}, is_root() && flag ? 1.0f : 0.0f);
  allreduce_sum(t, "rank 0's decision");
  return t.item<float>() > 0.5f;
}

void DataParallel::skip_gate_noise(int64_t n_rows, int64_t n_experts, const torch::TensorOptions& options) {
  if (n_rows > 0) torch::randn({n_rows, n_experts}, options);  // the same draw MoEImpl::forward makes for these rows
}

double DataParallel::take_comm_seconds() {
  const double s = comm_seconds_;
  comm_seconds_ = 0;
  return s;
}

nlohmann::json training_fingerprint(const TrainOptions& o, int world_size, const torch::Tensor& train_x,
                                    const torch::Tensor& train_y, const torch::Tensor& params, const nlohmann::json& settings) {
  return {{"world_size", world_size},
          {"model", to_json(o.model)},
          {"noisy_gating", o.model.noisy_gating},
          {"dataset", o.dataset},
          {"train_images", train_x.size(0)},
          {"train_data_hash", hash_tensor(train_x) + hash_tensor(train_y)},
          {"weights_hash", hash_tensor(params)},
          {"training", settings}};
}

}  // namespace moe
