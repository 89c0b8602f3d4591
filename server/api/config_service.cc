#include "server/api/services.h"

namespace yolo {

grpc::ServerUnaryReactor* ConfigServiceImpl::GetTrainingConfig(grpc::CallbackServerContext* context,
                                                               const v1::GetTrainingConfigRequest*,
                                                               v1::TrainingConfig* response) {
  return RunUnary(context, *auth_, /*mutating=*/false, [&]() -> absl::Status {
    for (const auto& [k, v] : store_->Get()) (*response->mutable_defaults())[k] = v;
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::UpdateTrainingConfig(
    grpc::CallbackServerContext* context, const v1::UpdateTrainingConfigRequest* request,
    v1::TrainingConfig* response) {
  return RunUnary(context, *auth_, /*mutating=*/true, [&]() -> absl::Status {
    std::map<std::string, std::string> set(request->set().begin(), request->set().end());
    std::vector<std::string> unset(request->unset().begin(), request->unset().end());
    auto updated = store_->Update(set, unset);
    if (!updated.ok()) return updated.status();
    for (const auto& [k, v] : *updated) (*response->mutable_defaults())[k] = v;
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::ListDeviceProfiles(
    grpc::CallbackServerContext* context, const v1::ListDeviceProfilesRequest*,
    v1::ListDeviceProfilesResponse* response) {
  return RunUnary(context, *auth_, /*mutating=*/false, [&]() -> absl::Status {
    for (const auto& p : DeviceProfiles(has_gpu_)) {
      auto* out = response->add_profiles();
      out->set_name(p.name);
      for (const auto& [k, v] : p.args) (*out->mutable_args())[k] = v;
      out->set_available(p.available);
      out->set_note(p.note);
    }
    return absl::OkStatus();
  });
}

}  // namespace yolo
