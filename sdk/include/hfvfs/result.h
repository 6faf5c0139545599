// File: result.h
//
// Errors are values. `Error` carries an errno-compatible code and a message that names what
// went wrong and where; `Result<T>` holds either a T or an Error; `Status` is `Result<void>`.
// No exception crosses a layer or the plugin boundary: a layer that calls code which may throw
// catches at its edge and returns an Error (see `CatchAll`).
//
//   Result<Attr> a = layer.stat("config.json");
//   if (!a) return a.error();                       // propagate
//   HFVFS_ASSIGN_OR_RETURN(auto attr, layer.stat("config.json"));
//   HFVFS_RETURN_IF_ERROR(file->flush());
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace hfvfs {

// An errno code (positive: ENOENT, EIO, ...) and a human message. The message never holds a
// secret: tokens, keys and signed URLs are redacted before an Error is built.
class Error {
 public:
  Error(int code, std::string message) : code_(code), message_(std::move(message)) {}

  int code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefixes the message with context ("hub: config.json: " + message), keeping the code.
  Error With(std::string_view context) const {
    return Error(code_, std::string(context) + ": " + message_);
  }

 private:
  int code_;
  std::string message_;
};

// Builds an Error; reads well at call sites: `return Err(ENOENT, "no such file: " + path)`.
inline Error Err(int code, std::string message) { return Error(code, std::move(message)); }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(v_); }
  int code() const { return ok() ? 0 : error().code(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit on purpose

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }
  int code() const { return ok_ ? 0 : error_.code(); }

 private:
  Error error_{0, ""};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() { return Status(); }

// Runs `fn` and turns any escaping exception into an Error (EIO, or ENOMEM for bad_alloc).
// Use at the edges where third-party code may throw: a plugin's create(), toml parsing, etc.
template <typename Fn>
auto CatchAll(std::string_view where, Fn&& fn) noexcept -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return Err(ENOMEM, std::string(where) + ": out of memory");
  } catch (const std::exception& e) {
    return Err(EIO, std::string(where) + ": " + e.what());
  } catch (...) {
    return Err(EIO, std::string(where) + ": unknown exception");
  }
}

}  // namespace hfvfs

#define HFVFS_CONCAT_INNER_(a, b) a##b
#define HFVFS_CONCAT_(a, b) HFVFS_CONCAT_INNER_(a, b)

// Returns the error of a Result/Status expression from the enclosing function.
#define HFVFS_RETURN_IF_ERROR(expr)                        \
  do {                                                     \
    auto hfvfs_status_ = (expr);                           \
    if (!hfvfs_status_.ok()) return hfvfs_status_.error(); \
  } while (0)

// `HFVFS_ASSIGN_OR_RETURN(auto x, Compute());` declares x from the value or returns the error.
#define HFVFS_ASSIGN_OR_RETURN(decl, expr) \
  HFVFS_ASSIGN_OR_RETURN_IMPL_(HFVFS_CONCAT_(hfvfs_result_, __LINE__), decl, expr)
#define HFVFS_ASSIGN_OR_RETURN_IMPL_(tmp, decl, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.error();                  \
  decl = std::move(tmp).value()
