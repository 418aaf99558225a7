#pragma once
// The status page's script and style sheet, compiled into the binary from
// daemon/web/status_page.js and status_page.css (CMake writes them into
// status_assets.cc from status_assets.cc.in): no file to install, no CDN.

namespace connwatch {

extern const char kStatusPageJs[];
extern const char kStatusPageCss[];

}  // namespace connwatch
