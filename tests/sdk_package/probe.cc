// sdk_package_probe PLUGIN_FILE DATA_DIR
//
// Loads an out-of-tree plugin (examples/plugin-hello, built against the installed SDK) with
// the kernel's own PluginLoader, which applies every ABI check, stacks it over a `local` layer
// of DATA_DIR with `only_suffix = ".txt"`, and prints what reading DATA_DIR/greeting.txt
// through it gives. Exit status 0 only if every step worked; errors go to stderr.
#include <fcntl.h>

#include <filesystem>
#include <iostream>
#include <string>

#include "hfvfs/config.h"
#include "hfvfs/plugin.h"
#include "local_layer.h"
#include "plugin_loader.h"

namespace {

class NullHost final : public hfvfs::Host {
 public:
  void invalidate(std::string_view, hfvfs::Invalidation) override {}
  std::string_view mount_id() const override { return "sdk-package-probe"; }
  bool shutting_down() const override { return false; }
};

int Fail(const std::string& what, const hfvfs::Error& error) {
  std::cerr << "probe: " << what << ": " << error.message() << "\n";
  return 1;
}

}  // namespace

int Probe(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: sdk_package_probe PLUGIN_FILE DATA_DIR\n";
    return 2;
  }
  const std::string plugin = argv[1];
  const std::string data = argv[2];

  hfvfs::kernel::PluginLoader loader({std::filesystem::path(plugin).parent_path().string()}, false);
  bool discovered = false;
  for (const hfvfs::kernel::FoundPlugin& found : loader.Discover()) {
    if (!found.refusal.empty()) {
      std::cerr << "probe: refused: " << found.refusal << "\n";
      return 1;
    }
    if (found.type == "uppercase") discovered = true;
  }
  if (!discovered) {
    std::cerr << "probe: the loader did not discover libhfvfs-uppercase.so\n";
    return 1;
  }
  auto descriptor = loader.Load("uppercase");
  if (!descriptor) return Fail("load", descriptor.error());
  const hfvfs::PluginDescriptor* d = *descriptor;
  std::cout << "plugin " << d->name << " " << d->plugin_version << " ("
            << (d->kind == hfvfs::LayerKind::kWrapper ? "wrapper" : "source") << ")\n";

  auto local = hfvfs::local::LocalLayer::Open(data, {});
  if (!local) return Fail("local", local.error());
  auto config = hfvfs::ConfigView::FromToml("only_suffix = \".txt\"\n", "probe.toml");
  if (!config) return Fail("config", config.error());
  NullHost host;
  hfvfs::LayerArgs args{**config, std::shared_ptr<hfvfs::Layer>(std::move(*local)), host, 1, ""};
  auto layer = d->create(args);
  if (!layer) return Fail("create", layer.error());
  if (auto unused = (*config)->check_unused(); !unused) return Fail("options", unused.error());

  auto file = (*layer)->open("greeting.txt", O_RDONLY);
  if (!file) return Fail("open", file.error());
  std::string buf(4096, '\0');
  auto n = (*file)->read(0, std::as_writable_bytes(std::span(buf)));
  if (!n) return Fail("read", n.error());
  if (auto closed = (*file)->close(); !closed) return Fail("close", closed.error());
  std::cout << "greeting.txt: " << buf.substr(0, *n);
  return 0;
}

int main(int argc, char** argv) {
  try {
    return Probe(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "probe: exception: " << e.what() << "\n";
    return 1;
  }
}
