// File: dir_layer.h
//
// A folder on disk as a lower layer for crypt's unit tests, with capabilities the test chooses
// (random writes on or off, to exercise the append-only path). Not a product layer: the real
// one is plugins/local.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "hfvfs/layer.h"

namespace hfvfs::crypt::testing {

struct DirLayerOptions {
  bool random_write = true;
  bool symlinks = true;
  // Called with (offset, size) at every File::read, from the reading thread (tests count the
  // lower reads a crypt read issues).
  std::function<void(uint64_t, size_t)> on_read;
};

std::shared_ptr<Layer> MakeDirLayer(std::string root, DirLayerOptions options = {});

}  // namespace hfvfs::crypt::testing
