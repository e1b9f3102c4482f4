#include "report/text.h"

#include <cairo.h>

#include "engine/error.h"
#include "report/cairo_rgb.h"

namespace ich {

void draw_captions(std::vector<uint8_t>& rgb, int w, int h, const std::vector<Caption>& captions) {
  ICH_CHECK(w > 0 && h > 0 && rgb.size() == size_t(w) * size_t(h) * 3, "draw_captions: ", rgb.size(),
            " bytes for a ", w, " x ", h, " RGB image");
  cairo_surface_t* s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  cairo_rgb::to_surface(rgb, s);
  cairo_t* cr = cairo_create(s);
  for (const Caption& c : captions) {
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                           c.bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, c.size);
    cairo_font_extents_t fe;
    cairo_font_extents(cr, &fe);
    cairo_set_source_rgb(cr, c.color[0] / 255.0, c.color[1] / 255.0, c.color[2] / 255.0);
    cairo_move_to(cr, c.x, c.y + fe.ascent);  // (x, y) is the top left: the baseline one ascent lower
    cairo_show_text(cr, c.text.c_str());
  }
  cairo_destroy(cr);
  rgb = cairo_rgb::from_surface(s);
  cairo_surface_destroy(s);
}

}  // namespace ich
