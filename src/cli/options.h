// Option groups shared by several subcommands, so each flag has one spelling, help text and default.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "base/choices.h"
#include "model/model_config.h"

namespace moe {

// --experts --top --emb-size --w-importance
void add_model_options(CLI::App* cmd, ModelConfig& c);
// --dataset mnist|fashion-mnist, --data DIR (env MOE_MNIST_DATA)
void add_data_options(CLI::App* cmd, std::string& dataset, std::string& data_dir);

// --split train|test; the default is whatever `split` holds.
void add_split_option(CLI::App* cmd, std::string& split, const std::string& help = "train or test");

// Validators with one plain line when they refuse (CLI11's own print a double's range in 309 digits,
// or accept -1 for an unsigned value as 2^64-1). CLI11 puts the flag in front: "--seed: expected a
// whole number from 0 to ..., got -1".
CLI::Validator non_empty();                                 // not ""
CLI::Validator whole_number(int64_t lo, int64_t hi);        // digits only, in lo..hi
CLI::Validator finite_number(double lo, double hi);         // a finite number in lo..hi

// An option whose value is one of an enum's spellings, parsed once here into `value`; --help shows
// the current value as the default.
template <typename E>
CLI::Option* add_choice_option(CLI::App* cmd, const std::string& flag, E& value, const std::string& help) {
  return cmd->add_option_function<std::string>(flag, [&value, flag](const std::string& s) { value = parse_choice<E>(s, flag); }, help)
      ->check(CLI::IsMember(spellings<E>()))
      ->default_str(to_string(value));
}

}  // namespace moe
