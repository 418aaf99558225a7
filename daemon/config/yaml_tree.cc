#include "config/yaml_tree.h"

#include <algorithm>

#include "config/yaml_errors.h"

namespace connwatch::config_detail {

void TreeBuilder::OnDocumentStart(const YAML::Mark& mark) {
  if (documents_++ > 0) throw SecondDocument{mark};
}

void TreeBuilder::OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) {
  YamlNode* node = New(YamlNode::Kind::kNull, mark, anchor);
  Attach(node);
}

void TreeBuilder::OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) {
  // The alias shares the anchored node (and so its place), like YAML::Node.
  const YamlNode* target = anchor < anchors_.size() ? anchors_[anchor] : nullptr;
  if (target == nullptr) {
    target = New(YamlNode::Kind::kNull, mark, YAML::NullAnchor);
  } else {
    count_->expanded = SaturatingAdd(count_->expanded, target->expanded);
    const uint64_t limit = std::max(kMinExpansionLimit, kExpansionFactor * count_->written);
    if (count_->expanded > limit) throw TooMuchExpansion{mark, limit, count_->written};
  }
  Attach(target);
}

void TreeBuilder::OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                           const std::string& value) {
  YamlNode* node = New(YamlNode::Kind::kScalar, mark, anchor);
  node->value = value;
  node->plain = tag == "?";
  // NOTE: yaml-cpp 0.7 ends a quoted scalar at the end of the input when
  // its closing quote is missing, which swallows the rest of the file.
  if (!node->plain && !mark.is_null() && mark.pos >= 0 &&
      static_cast<size_t>(mark.pos) < text_.size() &&
      (text_[static_cast<size_t>(mark.pos)] == '"' || text_[static_cast<size_t>(mark.pos)] == '\'') &&
      !QuoteIsClosed(text_, static_cast<size_t>(mark.pos))) {
    throw UnclosedQuote{mark};
  }
  Attach(node);
}

void TreeBuilder::OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/,
                                  YAML::anchor_t anchor, YAML::EmitterStyle::value /*style*/) {
  Open(YamlNode::Kind::kSequence, mark, anchor);
}

void TreeBuilder::OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/,
                             YAML::anchor_t anchor, YAML::EmitterStyle::value /*style*/) {
  Open(YamlNode::Kind::kMap, mark, anchor);
}

YamlNode* TreeBuilder::New(YamlNode::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor) {
  YamlNode& node = nodes_.emplace_back();
  ++count_->written;
  count_->expanded = SaturatingAdd(count_->expanded, 1);
  node.kind = kind;
  if (!mark.is_null()) {
    node.line = mark.line + 1;
    node.column = mark.column + 1;
  }
  if (anchor != YAML::NullAnchor) {
    if (anchors_.size() <= anchor) anchors_.resize(anchor + 1, nullptr);
    anchors_[anchor] = &node;
  }
  return &node;
}

void TreeBuilder::Attach(const YamlNode* node) {
  if (!stack_.empty()) {
    stack_.back()->children.push_back(node);
  } else if (root_ == nullptr) {
    root_ = node;
  }
}

void TreeBuilder::Open(YamlNode::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor) {
  if (static_cast<int>(stack_.size()) >= kMaxDepth) throw TooDeep{mark};
  YamlNode* node = New(kind, mark, anchor);
  Attach(node);
  stack_.push_back(node);
}

void TreeBuilder::Close() {
  YamlNode* node = stack_.back();
  uint64_t expanded = 1;
  for (const YamlNode* child : node->children) {
    expanded = SaturatingAdd(expanded, child->expanded);
  }
  node->expanded = expanded;
  stack_.pop_back();
}

}  // namespace connwatch::config_detail
