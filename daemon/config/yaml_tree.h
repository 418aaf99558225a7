#pragma once
// The document tree of a config file: YAML parser events turned into nodes
// that keep their place (file line and column), every pair of a map
// (duplicates included) and how many nodes each stands for once aliases are
// expanded. Built from yaml-cpp's parser events rather than YAML::Load: deep
// nesting is refused as soon as it starts and nothing is ever converted, so
// nothing throws BadConversion. Used by the loader only.

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/mark.h>

#include <cstdint>
#include <deque>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace connwatch::config_detail {

// A connwatch config is at most four levels deep (targets, a target, its
// labels/keepalive/heartbeat, a value). Deeper documents are refused while
// parsing, which also bounds yaml-cpp's recursion (its own guard allows 500
// levels, about 250 KB of stack: too much for a small thread stack).
constexpr int kMaxDepth = 64;
// Aliases make a config stand for more nodes than it holds (an alias counts
// the whole node it names, each time it is referenced), and the loader walks
// an aliased node as often as it is referenced. A document is refused at the
// alias that takes its nodes, aliases expanded, past max(kMinExpansionLimit,
// kExpansionFactor x the nodes written so far), counted across the main file
// and its includes. Why these numbers: aliases are the only way to share
// labels between targets (labels are not allowed in defaults), and a target
// writes at least 4 nodes (its map, "address" and its value, the key of the
// alias) while an alias of a map of L labels stands for 1 + 2L. With a factor
// of 16, every target of a config of any size may alias a map of up to 29
// labels (5 labels, as in most configs: under 4 times), and under the floor
// anything goes (10,000 targets sharing 45 labels). What is refused is built
// to amplify: 10,000 aliases of a 1,000-key map in 38 KB took 10 s of CPU
// before this bound, and is now refused while parsing. What aliases can still
// cost a load that is not refused is bounded by the floor (walking 1,000,000
// expanded nodes that are all errors takes about 0.5 s, release build) and by
// the factor (a 650 KB file built to stay just under it took 1.6 s to load
// with its errors; the same bytes without aliases, 0.2 s).
constexpr uint64_t kMinExpansionLimit = 1000000;
constexpr uint64_t kExpansionFactor = 16;

// One node of a parsed YAML document with its place (1-based). Built from
// yaml-cpp's parser events rather than YAML::Load: that lets us refuse deep
// nesting as soon as it starts, keeps every pair of a map (duplicates
// included), and never throws BadConversion because nothing is converted.
struct YamlNode {
  enum class Kind : uint8_t { kNull, kScalar, kSequence, kMap };
  Kind kind = Kind::kNull;
  bool plain = false;  // a scalar written without quotes: `false`, not "false".
  int line = 0;
  int column = 0;
  std::string value;                      // scalars only.
  std::vector<const YamlNode*> children;  // sequence items, or key, value, key, value...
  // How many nodes this one stands for once aliases are expanded: 1 plus
  // the expanded sizes of its children (saturating). Final once the node
  // has ended; an alias of a node that has not ended yet (`&a [*a]`, a
  // cycle the loader never follows more than a few levels) counts 1.
  uint64_t expanded = 1;
};

inline uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

struct TooDeep {
  YAML::Mark mark;
};
struct SecondDocument {
  YAML::Mark mark;
};
struct UnclosedQuote {  // a quoted scalar that runs to the end of the file.
  YAML::Mark mark;
};
struct TooMuchExpansion {
  YAML::Mark mark;   // the alias that crossed the limit.
  uint64_t limit;    // the limit it crossed.
  uint64_t written;  // nodes written so far, which the limit was computed from.
};

// Node counts of one load, across the main file and its includes.
struct NodeCount {
  uint64_t written = 0;   // nodes in the files (an alias adds none).
  uint64_t expanded = 0;  // nodes once aliases are expanded (saturating).
};

// Owns the nodes of one document. Throws TooDeep past kMaxDepth,
// SecondDocument when a second document starts, UnclosedQuote for a quoted
// scalar of `text` that never closes, and TooMuchExpansion at the alias that
// takes `count->expanded` past max(kMinExpansionLimit, kExpansionFactor x
// count->written).
class TreeBuilder : public YAML::EventHandler {
 public:
  TreeBuilder(NodeCount* count, std::string_view text) : count_(count), text_(text) {}
  const YamlNode* root() const { return root_; }

  void OnDocumentStart(const YAML::Mark& mark) override;
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override;
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override;
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override;
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value style) override;
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value style) override;
  void OnMapEnd() override { Close(); }

 private:
  YamlNode* New(YamlNode::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor);
  void Attach(const YamlNode* node);
  void Open(YamlNode::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor);
  void Close();

  NodeCount* count_;
  std::string_view text_;
  std::deque<YamlNode> nodes_;  // a deque: pointers stay valid as it grows.
  std::vector<YamlNode*> stack_;
  std::vector<const YamlNode*> anchors_;
  const YamlNode* root_ = nullptr;
  int documents_ = 0;
};

}  // namespace connwatch::config_detail
