// training_config.yaml in the state dir (ConfigService's defaults): loaded, or refused with the
// file named; whatever loads is a set of valid arguments.
#include "common/train_args.h"
#include "fuzz/fuzz_util.h"
#include "server/experiments/training_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  yolo::fuzz::WriteInput("training_config.yaml", data, size);
  auto store = yolo::TrainingConfigStore::Open(yolo::fuzz::ScratchDir().string());
  if (!store.ok()) return 0;
  yolo::TrainArgs check;
  for (const auto& [key, value] : (*store)->Get()) yolo::fuzz::Require(check.Set(key, value).ok());
  return 0;
}
