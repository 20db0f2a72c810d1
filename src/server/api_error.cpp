#include "server/api_error.h"

#include <nlohmann/json.hpp>

namespace sr::server {

ApiError::ApiError(int status_, std::string type_, std::string code_, std::string param_, const std::string& message)
    : std::runtime_error(message),
      status(status_),
      type(std::move(type_)),
      code(std::move(code_)),
      param(std::move(param_)) {}

ApiError ApiError::bad_request(const std::string& param, const std::string& message, const std::string& code) {
    return ApiError(400, "invalid_request_error", code, param, message);
}

ApiError ApiError::not_found(const std::string& message, const std::string& param) {
    return ApiError(404, "invalid_request_error", "not_found", param, message);
}

std::string ApiError::body() const {
    return error_body(type, code, param, what());
}

std::string error_body(const std::string& type, const std::string& code, const std::string& param,
                       const std::string& message) {
    nlohmann::json e;
    e["message"] = message;
    e["type"] = type;
    e["param"] = param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param);
    e["code"] = code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code);
    // Messages may quote what a client sent: replace invalid UTF-8 rather than fail to answer.
    return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace sr::server
