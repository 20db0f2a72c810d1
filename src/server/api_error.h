// The server's errors as the client sees them: an HTTP status and OpenAI's error object,
// {"error": {"message", "type", "param", "code"}}. Handlers throw ApiError; the one exception handler turns it
// (and anything else, without its text) into the response.
//
//   throw sr::server::ApiError::bad_request("size", "size 100x64: width must be a multiple of 16");
//   res.status = e.status; res.set_content(e.body(), "application/json");
#pragma once

#include <stdexcept>
#include <string>

namespace sr::server {

class ApiError : public std::runtime_error {
public:
    ApiError(int status, std::string type, std::string code, std::string param, const std::string& message);

    // 400 invalid_request_error naming the field (`param`) at fault.
    static ApiError bad_request(const std::string& param, const std::string& message,
                                const std::string& code = "invalid_value");
    static ApiError not_found(const std::string& message, const std::string& param = "");

    int status;
    std::string type, code, param;
    // {"error": {...}} as JSON text.
    std::string body() const;
};

// The JSON body of an error (param "" is written as null).
std::string error_body(const std::string& type, const std::string& code, const std::string& param,
                       const std::string& message);

}  // namespace sr::server
