#include <dontunmap/dontunmap.hpp>
#include <cstdio>

int main() {
  auto r = dontunmap::remapper::create();
  if (!r) return std::printf("create: %s\n", r.error().message().c_str()), 1;
  std::printf("consumer: automatic backend, module %s\n", r->has_module() ? "open" : "absent");
  return 0;
}
