// `moe-mnist export`
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "base/atomic_file.h"
#include "model/checkpoint.h"
#include "base/errors.h"
#include "repository/triton_repo.h"

#ifdef MOE_MNIST_HAVE_ONNX
#include "onnx_export/export.h"
#endif

namespace moe {

void add_export_command(CLI::App& app) {
#ifdef MOE_MNIST_HAVE_ONNX
  struct Args {
    std::string checkpoint = "runs/mnist", out, triton_repo, input = "float";
    ExportOptions options;
    TritonModelConfig triton;
    int64_t version = 1;
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("export", "Export a checkpoint to a static ONNX graph (opset 17, dynamic batch), checked by the ONNX checker");
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint directory written by 'train'")->capture_default_str();
  cmd->add_option("--out", a->out,
                  "Output .onnx file (default: <checkpoint>/model.<precision>[-<routing>][-static][-u8].onnx, the names bench reads)");
  add_choice_option(cmd, "--precision", a->options.precision, "fp32, fp16 (float32 inputs/outputs) or int8 (dynamic quantisation)");
  add_choice_option(cmd, "--routing", a->options.routing,
                    "dense: TopK + combine matrix, all experts in one MatMul; gather: each row gathers its k experts' "
                    "weights; moe: ONNX Runtime's com.microsoft.MoE operator; fused: one ai.moe_mnist.MoeMnist node, the native "
                    "kernel as an ONNX Runtime custom op (fp32; needs libmoe_mnist_ops.so, which moe-mnist registers itself). "
                    "dense is the default: it runs on any ONNX runtime");
  add_choice_option(cmd, "--int8-input", a->options.int8_input,
                    "int8 activations: dynamic (scale from each batch) or static (scale 1/255 for the [0,1] input contract)");
  cmd->add_option("--input", a->input,
                  "The graph's input: float (float32 [N,1,28,28] in [0,1]) or uint8 (the image bytes [N,1,28,28] 0..255, 1/255 "
                  "folded into the embedding; --precision fp32 with --routing dense or fused; file name gets -u8)")
      ->check(CLI::IsMember({"float", "uint8"}))
      ->capture_default_str();
  cmd->add_flag("!--per-tensor", a->options.per_channel, "int8: one weight scale per tensor instead of per output column");
  auto* repo = cmd->add_option("--triton-repo", a->triton_repo,
                               "Write into a Triton model repository instead: DIR/<name>/config.pbtxt and\n"
                               "DIR/<name>/<version>/model.onnx (read by Triton and by `serve --model-repository`)");
  cmd->add_option("--version", a->version, "--triton-repo: the version folder to write (a new version of an existing model leaves the others)")
      ->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 62));
  cmd->add_option("--version-policy", a->triton.version_policy,
                  "--triton-repo: which versions the server serves: latest:N, all, or specific:V[,V...]")
      ->capture_default_str();
  cmd->add_option("--name", a->triton.name, "--triton-repo: the model's name (its folder); default moe-mnist, or moe-mnist-u8 with --input uint8");
  cmd->add_option("--max-batch", a->triton.max_batch, "--triton-repo: max_batch_size")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--instances", a->triton.instances, "--triton-repo: model instances (KIND_CPU)")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_flag("--force", a->force, "--triton-repo: replace that version's model.onnx, or a config.pbtxt with other settings");
  repo->excludes(cmd->get_option("--out"));
  cmd->callback([a, cmd_name = cmd->get_option("--name")] {
    a->options.uint8_input = a->input == "uint8";
    const ExportOptions& o = a->options;
    if (o.precision != Precision::int8 && !o.per_channel)
      throw InputError("--per-tensor applies to --precision int8 only, not " + to_string(o.precision));
    if (o.precision != Precision::int8 && o.int8_input != Int8Input{})
      throw InputError("--int8-input applies to --precision int8 only, not " + to_string(o.precision));
    std::string out = a->out.empty() ? a->checkpoint + "/" + model_file_name(o.precision, o.routing, o.int8_input, o.uint8_input) : a->out;
    const std::vector<std::string> inputs = {config_path(a->checkpoint), weights_path(a->checkpoint), train_state_path(a->checkpoint)};
    if (a->triton_repo.empty()) check_output_file(out, "--out", {"onnx"}, inputs);
    const Checkpoint ck = load_checkpoint(a->checkpoint);
    if (!a->triton_repo.empty()) {
      a->triton.uint8_input = o.uint8_input;  // the UINT8 graph is its own model, config input TYPE_UINT8
      if (cmd_name->count() == 0) a->triton.name = default_triton_model_name(o.uint8_input);
      check_model_name(a->triton.name, "--name");
      if (o.routing == Routing::moe || o.routing == Routing::fused)
        throw InputError("--triton-repo: --routing " + to_string(o.routing) +
                         " needs ONNX Runtime with its contrib / custom ops; Triton serves dense or gather");
      check_version_policy(a->triton.version_policy, "--version-policy");
      out = triton_model_file(a->triton_repo, a->triton.name, a->version);
      if (std::filesystem::exists(out) && !a->force) throw InputError(out + " exists; add --force to replace that version");
      a->triton.n_classes = ck.meta.model.n_classes;
      a->triton.n_experts = ck.meta.model.n_experts;
      const std::string cfg = triton_config_file(a->triton_repo, a->triton.name);
      // A new version of an existing model keeps its config.pbtxt, unless the settings differ.
      if (std::filesystem::exists(cfg) && !a->force && read_file(cfg, kMaxConfigBytes, "config.pbtxt") != triton_config_pbtxt(a->triton))
        throw InputError(cfg + " exists with other settings (name, sizes, batching or --version-policy); add --force to replace it");
      std::filesystem::create_directories(std::filesystem::path(out).parent_path());
    }
    const ExportSummary s = export_onnx(ck, a->options, out);
    std::string ops;
    for (const auto& [op, n] : s.op_counts) ops += (ops.empty() ? "" : ", ") + op + (n > 1 ? " x" + std::to_string(n) : "");
    std::fprintf(stderr, "wrote %s (%s, %s routing): %lld nodes [%s], %lld parameters, %.1f KiB; ONNX checker passed\n",
                 out.c_str(), to_string(o.precision).c_str(), to_string(o.routing).c_str(), (long long)s.n_nodes, ops.c_str(),
                 (long long)s.n_parameters, s.bytes / 1024.0);
    if (!a->triton_repo.empty()) {
      write_file_atomically(triton_config_file(a->triton_repo, a->triton.name), triton_config_pbtxt(a->triton));
      std::fprintf(stderr, "wrote %s (Triton model repository: tritonserver --model-repository %s)\n",
                   triton_config_file(a->triton_repo, a->triton.name).c_str(), a->triton_repo.c_str());
    }
  });
#else
  app.add_subcommand("export", "Export to ONNX (unavailable: built without libonnx-dev)")->callback([] {
    throw UnavailableError("export: this build has no ONNX (apt install libonnx-dev and rebuild)");
  });
#endif
}

}  // namespace moe
