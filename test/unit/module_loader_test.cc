// Loading filter modules: every way a shared object can be refused, each
// with the file and the reason, and a good module whose filter works. The
// test modules are built from test/modules/ into PORTWAY_TEST_MODULE_DIR.
#include "core/http/module_loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/common/strings.h"
#include "core/server/config_builder.h"
#include "gmock/gmock.h"
#include "google/protobuf/empty.pb.h"
#include "gtest/gtest.h"
#include "portway/abi.h"
#include "portway/config/v1/bootstrap.pb.h"

namespace portway::http {
namespace {

using ::testing::HasSubstr;

std::string ModulePath(const std::string& name) {
  return std::string(PORTWAY_TEST_MODULE_DIR) + "/" + name + ".so";
}

std::string Message(const absl::Status& status) { return std::string(status.message()); }

// A scratch directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = std::filesystem::temp_directory_path() / "portway-module-test-XXXXXX";
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

class NamedFactory : public FilterFactory {
 public:
  explicit NamedFactory(std::string name) : name_(std::move(name)) {}
  std::string_view Name() const override { return name_; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override {
    return std::make_unique<google::protobuf::Empty>();
  }
  absl::StatusOr<FilterFactoryCallback> Create(const google::protobuf::Message&) const override {
    return FilterFactoryCallback([] { return std::make_unique<Filter>(); });
  }

 private:
  std::string name_;
};

TEST(ModuleLoaderTest, RefusesAMissingFile) {
  FilterRegistryImpl registry;
  absl::Status s = LoadModule("/nonexistent/portway/missing.so", registry);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr("'/nonexistent/portway/missing.so'"));
  EXPECT_THAT(Message(s), HasSubstr("no such file"));
}

TEST(ModuleLoaderTest, RefusesAFileThatIsNotASharedObject) {
  TempDir dir;
  std::string path = dir.File("text.so");
  std::ofstream(path) << "this is not an ELF file\n";
  FilterRegistryImpl registry;
  absl::Status s = LoadModule(path, registry);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr(path));
  EXPECT_THAT(Message(s), HasSubstr("not a loadable shared object"));
}

TEST(ModuleLoaderTest, RefusesADirectory) {
  TempDir dir;
  FilterRegistryImpl registry;
  absl::Status s = LoadModule(dir.File(""), registry);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr("not a regular file"));
}

TEST(ModuleLoaderTest, RefusesASharedObjectWithoutEntryPoints) {
  FilterRegistryImpl registry;
  absl::Status s = LoadModule(ModulePath("no_entry"), registry);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr(ModulePath("no_entry")));
  EXPECT_THAT(Message(s), HasSubstr("not a Portway module"));
  EXPECT_THAT(Message(s), HasSubstr("portway_module_abi_stamp"));
}

TEST(ModuleLoaderTest, RefusesAModuleWithAnotherAbiStampAndShowsBoth) {
  FilterRegistryImpl registry;
  absl::Status s = LoadModule(ModulePath("wrong_stamp"), registry);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr(ModulePath("wrong_stamp")));
  EXPECT_THAT(Message(s), HasSubstr("ABI stamp mismatch"));
  EXPECT_THAT(Message(s), HasSubstr("'portway 0.0.1; sdk 0000000000000000;"));
  EXPECT_THAT(Message(s), HasSubstr(Cat("'", GatewayAbiStamp(), "'")));
  // Its registration never ran.
  EXPECT_EQ(registry.Find("test.wrong_stamp"), nullptr);
  EXPECT_TRUE(registry.Names().empty());
}

TEST(ModuleLoaderTest, RefusesAModuleWhoseRegistrationThrowsAndRegistersNothing) {
  FilterRegistryImpl registry;
  absl::Status s = LoadModule(ModulePath("throws_on_register"), registry);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr(ModulePath("throws_on_register")));
  EXPECT_THAT(Message(s), HasSubstr("registration failed: test module throws on purpose"));
  // It registered a factory before throwing: all or nothing.
  EXPECT_EQ(registry.Find("test.throws"), nullptr);
  EXPECT_TRUE(registry.Modules().empty());
}

TEST(ModuleLoaderTest, RefusesAModuleThatAbortsWhileLoadingAndKeepsRunning) {
  FilterRegistryImpl registry;
  absl::Status s = LoadModule(ModulePath("aborts_on_load"), registry);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr(ModulePath("aborts_on_load")));
  EXPECT_THAT(Message(s), HasSubstr("killed by signal 6"));
  EXPECT_THAT(Message(s), HasSubstr("it printed: aborts_on_load: aborting on purpose"));
  // This process never mapped it.
  EXPECT_EQ(dlopen(ModulePath("aborts_on_load").c_str(), RTLD_NOW | RTLD_NOLOAD), nullptr);
}

TEST(ModuleLoaderTest, NeverMapsAModuleWithAnotherStamp) {
  FilterRegistryImpl registry;
  ASSERT_FALSE(LoadModule(ModulePath("wrong_stamp"), registry).ok());
  EXPECT_EQ(dlopen(ModulePath("wrong_stamp").c_str(), RTLD_NOW | RTLD_NOLOAD), nullptr);
}

TEST(ModuleLoaderTest, LoadsAGoodModuleWhoseFilterUsesTheSdk) {
  FilterRegistryImpl registry;
  absl::Status s = LoadModule(ModulePath("good"), registry);
  ASSERT_TRUE(s.ok()) << s;
  const FilterFactory* factory = registry.Find("test.good");
  ASSERT_NE(factory, nullptr);
  std::unique_ptr<google::protobuf::Message> config = factory->NewConfig();
  absl::StatusOr<FilterFactoryCallback> make = factory->Create(*config);
  ASSERT_TRUE(make.ok());
  FilterPtr filter = (*make)();
  HeaderMap headers;
  headers.Add(":status", "200");
  EXPECT_EQ(filter->EncodeHeaders(headers, true), FilterHeadersStatus::kContinue);
  EXPECT_EQ(headers.GetOr("x-test-module", ""), "good");
  EXPECT_EQ(registry.Modules().size(), 1u);
}

TEST(ModuleLoaderTest, LoadingTheSameFileTwiceIsANoOp) {
  TempDir dir;
  std::string link = dir.File("good-link.so");
  std::filesystem::create_symlink(ModulePath("good"), link);
  FilterRegistryImpl registry;
  ASSERT_TRUE(LoadModule(ModulePath("good"), registry).ok());
  EXPECT_TRUE(LoadModule(ModulePath("good"), registry).ok());
  EXPECT_TRUE(LoadModule(link, registry).ok());
  EXPECT_EQ(registry.Names(), std::vector<std::string>{"test.good"});
  EXPECT_EQ(registry.Modules().size(), 1u);
}

TEST(ModuleLoaderTest, RefusesAModuleWhoseFilterNameIsTaken) {
  FilterRegistryImpl registry;
  ASSERT_TRUE(registry.Register(std::make_unique<NamedFactory>("test.good")).ok());
  const FilterFactory* before = registry.Find("test.good");
  absl::Status s = LoadModule(ModulePath("good"), registry);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr(ModulePath("good")));
  EXPECT_THAT(Message(s), HasSubstr("filter 'test.good' is already registered"));
  EXPECT_EQ(registry.Find("test.good"), before);
  EXPECT_TRUE(registry.Modules().empty());
}

TEST(ModuleLoaderTest, GatewayStampNamesVersionSdkAndCompiler) {
  std::string stamp = GatewayAbiStamp();
  EXPECT_THAT(stamp, HasSubstr(Cat("portway ", PORTWAY_VERSION_STRING, "; sdk ")));
  EXPECT_THAT(stamp, HasSubstr(PORTWAY_SDK_HASH));
  EXPECT_THAT(stamp, HasSubstr("; c++ 202002L"));
  EXPECT_EQ(std::string(PORTWAY_SDK_HASH).size(), 16u);
}

// The config side: modules[i].path, resolved against module_dir or the
// config file's directory, errors at the field's path.
TEST(FileSha256Test, HashesAFileAsSha256sumDoes) {
  TempDir dir;
  std::string path = dir.File("abc.so");
  std::ofstream(path) << "abc";
  absl::StatusOr<std::string> sum = FileSha256(path);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_FALSE(FileSha256(dir.File("missing.so")).ok());
}

TEST(FilterRegistryTest, SaysWhyAFilterIsUnavailableUntilItRegisters) {
  FilterRegistryImpl registry;
  EXPECT_EQ(registry.Unavailable("test.good"), nullptr);
  registry.SetUnavailable("test.good", "not allowed");
  ASSERT_NE(registry.Unavailable("test.good"), nullptr);
  EXPECT_EQ(*registry.Unavailable("test.good"), "not allowed");
  ASSERT_TRUE(LoadModule(ModulePath("good"), registry).ok());
  EXPECT_EQ(registry.Unavailable("test.good"), nullptr);
}

TEST(LoadModulesTest, ResolvesRelativePathsAndReportsEachFailureAtItsPath) {
  config::v1::Bootstrap bootstrap;
  bootstrap.add_modules()->set_path("good.so");
  bootstrap.add_modules()->set_path("wrong_stamp.so");
  bootstrap.add_modules()->set_path("");
  config::ConfigErrors errors;
  // The config file's directory by default.
  EXPECT_FALSE(
      server::LoadModules(bootstrap, Cat(PORTWAY_TEST_MODULE_DIR, "/portway.yaml"), &errors));
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].path, "modules[1].path");
  EXPECT_THAT(errors[0].message, HasSubstr(ModulePath("wrong_stamp")));
  EXPECT_THAT(errors[0].message, HasSubstr("ABI stamp mismatch"));
  EXPECT_EQ(errors[1].path, "modules[2].path");
  EXPECT_EQ(errors[1].message, "is required");
  EXPECT_NE(GlobalFilterRegistry().Find("test.good"), nullptr);

  // module_dir, itself relative to the config file's directory.
  config::v1::Bootstrap relative;
  relative.set_module_dir("modules");
  relative.add_modules()->set_path("good.so");
  errors.clear();
  std::string parent = std::filesystem::path(PORTWAY_TEST_MODULE_DIR).parent_path();
  EXPECT_TRUE(server::LoadModules(relative, parent + "/portway.yaml", &errors));
  EXPECT_TRUE(errors.empty());

  relative.set_module_dir("elsewhere");
  errors.clear();
  EXPECT_FALSE(server::LoadModules(relative, parent + "/portway.yaml", &errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0].message, HasSubstr(parent + "/elsewhere/good.so"));
  EXPECT_THAT(errors[0].message, HasSubstr("no such file"));
}

}  // namespace
}  // namespace portway::http
