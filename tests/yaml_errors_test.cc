// Unit tests of the YAML syntax-error explanations (config/yaml_errors.h).
// The bad-config corpus (tests/configs/bad/36-* to 50-*) checks them through
// the loader; these cover the edges: places past the text, CRLF files, and
// errors where no explanation fits.

#include "config/yaml_errors.h"

#include <gtest/gtest.h>

#include <string>

#include "config/loader.h"

namespace connwatch {
namespace {

TEST(YamlErrors, PlacesOutsideTheTextFallBackToTheParserWords) {
  for (const auto& [line, column] : {std::pair{0, 0}, {1, 0}, {99, 1}, {1, 9999}, {3, 1}}) {
    YamlProblem p = ExplainYamlError("a: b\n", line, column, "end of map not found");
    EXPECT_FALSE(p.message.empty());
    EXPECT_NE(p.message.find("end of map not found"), std::string::npos) << p.message;
  }
  YamlProblem empty = ExplainYamlError("", 1, 1, "unknown token");
  EXPECT_EQ(empty.message, "invalid YAML: unknown token" + std::string(kNotCheckedFurther));
}

TEST(YamlErrors, UnexplainedErrorsKeepTheParserWords) {
  YamlProblem p = ExplainYamlError("targets:\n  - a\n", 2, 5, "some other complaint");
  EXPECT_EQ(p.line, 2);
  EXPECT_EQ(p.column, 5);
  EXPECT_EQ(p.message, "invalid YAML: some other complaint" + std::string(kNotCheckedFurther));
}

TEST(YamlErrors, CrlfLinesAreMeasuredWithoutTheCr) {
  ConfigLoadResult r = LoadConfigString(
      "targets:\r\n  - address: 192.0.2.1:80\r\n     name: x\r\n", "crlf.yaml", "");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].column, 6);
  EXPECT_NE(r.errors[0].message.find("wrong indentation: \"name\" starts in column 6"),
            std::string::npos)
      << r.errors[0].message;
}

TEST(YamlErrors, CommentLinesWithTabsAreNotBlamed) {
  // The tab is in a comment; the error is the indentation of "name".
  ConfigLoadResult r = LoadConfigString(
      "targets:\n  - address: 192.0.2.1:80\n\t# note\n   name: x\n", "c.yaml", "");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].message.find("a tab"), std::string::npos) << r.errors[0].message;
}

TEST(YamlErrors, QuoteIsClosed) {
  EXPECT_TRUE(QuoteIsClosed("\"a\\\"b\" x", 0));
  EXPECT_FALSE(QuoteIsClosed("\"a\\\"", 0));
  EXPECT_TRUE(QuoteIsClosed("'it''s'", 0));
  EXPECT_FALSE(QuoteIsClosed("'it''s", 0));
  EXPECT_FALSE(QuoteIsClosed("", 0));
  // A quoted value spread over lines is valid YAML and stays accepted.
  ConfigLoadResult r = LoadConfigString(
      "targets:\n  - address: 192.0.2.1:80\n    heartbeat: {send: \"PING\n      \", expect: x}\n",
      "multi.yaml", "");
  EXPECT_TRUE(r.errors.empty()) << r.errors[0].ToString();
}

TEST(YamlErrors, IncludedFilesGetTheSameExplanations) {
  // Built with append(): `std::string(...) + "literal"` trips GCC 12's
  // -Warray-bounds false positive once inlined with precompiled headers.
  std::string path(CONNWATCH_SOURCE_DIR);
  path.append("/tests/configs/bad/21-include-bad-file.yaml");
  ConfigLoadResult r = LoadConfigFile(path);
  bool found = false;
  for (const ConfigError& e : r.errors) {
    if (e.file.find("bad-yaml.yaml") != std::string::npos) {
      found = true;
      EXPECT_NE(e.message.find("wrong indentation"), std::string::npos) << e.ToString();
      EXPECT_NE(e.message.find(kNotCheckedFurther), std::string::npos) << e.ToString();
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace connwatch
