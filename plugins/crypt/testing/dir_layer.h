// File: dir_layer.h
//
// A folder on disk as a lower layer for crypt's unit tests, with capabilities the test chooses
// (random writes on or off, to exercise the append-only path). Not a product layer: the real
// one is plugins/local.
#pragma once

#include <memory>
#include <string>

#include "hfvfs/layer.h"

namespace hfvfs::crypt::testing {

struct DirLayerOptions {
  bool random_write = true;
  bool symlinks = true;
};

std::shared_ptr<Layer> MakeDirLayer(std::string root, DirLayerOptions options = {});

}  // namespace hfvfs::crypt::testing
