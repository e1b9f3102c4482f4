// Grad-CAM on the phantom: a small model trained on phantom slices looks at
// the blood. For the positive slices it detects, the peak of the "any"
// heatmap must lie on the drawn lesion for most of them: inside its bounding
// box widened by half a feature-map cell (the map of a 128 x 128 input is
// 4 x 4, one cell per 32 pixels, so its peak is only known to that grain).
#include <filesystem>

#include "dicom/window_slice.h"
#include "infer/gradcam.h"
#include "infer/preprocess.h"
#include "io/npy.h"
#include "phantom/phantom.h"
#include "tests/phantom_fixture.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

TEST(GradCam, HeatmapPeaksOnTheLesion) {
  const std::string dir = test::fresh_dir("ich_gradcam");
  PhantomOptions po;
  po.difficulty = "easy";  // the first phantom: bright, sharp lesions, quick to learn
  po.patients = 40;
  po.size = 128;
  po.seed = 2;
  const test::PhantomSet ps = test::make_phantom_set(dir, po);
  TrainOptions to;
  to.train_csv = ps.train_csv;
  to.valid_csv = ps.valid_csv;
  to.images = ps.images;
  to.out = dir + "/run";
  to.size = 128;
  to.epochs = 8;
  to.batch = 16;
  to.lr = 1e-3;
  to.device = "cpu";
  to.seed = 1;
  ASSERT_EQ(train(to), 0);
  LoadedCheckpoint c = load_checkpoint(dir + "/run/best.ckpt");

  const CsvTable manifest = read_csv(ps.phantom + "/manifest.csv");
  const size_t c_id = manifest.column("image_id"), c_any = manifest.column("any"), c_x0 = manifest.column("box_x0"),
               c_y0 = manifest.column("box_y0"), c_x1 = manifest.column("box_x1"), c_y1 = manifest.column("box_y1"),
               c_rows = manifest.column("rows"), c_cols = manifest.column("cols"), c_bad = manifest.column("corrupt");
  int detected = 0, on_lesion = 0;
  AugmentOptions ao;
  ao.size = 128;
  ao.augment = false;
  for (const auto& r : manifest.rows) {
    if (r[c_any] != "1" || r[c_bad] != "none" || r[c_rows] != "128" || r[c_cols] != "128") continue;
    const Tensor img = read_npy(ps.images + "/" + r[c_id] + ".npy");
    Tensor x = Tensor::empty({1, 3, 128, 128});
    Generator unused(0);
    augment_slice(img.data<uint8_t>(), 128, 128, 3, ao, unused, x.data<float>());
    const CamResult cam = grad_cam(*c.model, x, 5);
    if (cam.probability < 0.5) continue;  // judge where it looks when it finds the blood
    ++detected;
    const size_t peak = size_t(std::max_element(cam.heat.begin(), cam.heat.end()) - cam.heat.begin());
    const int px = int(peak % 128), py = int(peak / 128), margin = 128 / cam.map_w / 2;
    on_lesion += px >= std::stoi(r[c_x0]) - margin && px <= std::stoi(r[c_x1]) + margin &&
                 py >= std::stoi(r[c_y0]) - margin && py <= std::stoi(r[c_y1]) + margin;
  }
  std::printf("Grad-CAM: peak on the lesion in %d of %d detected positive slices\n", on_lesion, detected);
  EXPECT_GE(detected, 20);
  EXPECT_GE(on_lesion, detected * 7 / 10);
  fs::remove_all(dir);
}

// The preprocessing contract (infer/preprocess.h): ich-inspect and ich-serve
// window a DICOM file for a checkpoint into the bytes ich-window wrote for
// it, and slice_cam() (inspect's --cam and serve's key images) draws the same
// picture from either. Any model will do: an untrained one.
TEST(GradCam, InspectAndServeSeeTheBytesIchWindowWrote) {
  const std::string dir = test::fresh_dir("ich_gradcam_contract");
  PhantomOptions po;
  po.difficulty = "easy";
  po.patients = 2;
  po.slices_per_series = 6;
  po.size = 96;
  po.seed = 3;
  const test::PhantomSet ps = test::make_phantom_set(dir, po, /*windowed=*/true, /*split=*/false);
  Generator gen(1);
  ResNeXt model(resnext_preset("resnext_mini", 6), gen);
  model.eval();
  CheckpointMeta meta;  // the default windows, brain, subdural and soft tissue, as ich-window's
  meta.size = 64;       // the model's input is smaller than the slice: slice_input() resizes
  const CsvTable m = read_csv(ps.images + "/meta.csv");
  const size_t c_path = m.column("path"), c_id = m.column("image_id");
  int compared = 0;
  for (const auto& r : m.rows) {
    const Tensor npy = read_npy(ps.images + "/" + r[c_id] + ".npy");
    const WindowedImage wi = window_frame(r[c_path], windowing_for(meta));
    ASSERT_EQ(wi.h, npy.size(0));
    ASSERT_EQ(wi.w, npy.size(1));
    ASSERT_EQ(wi.channels, npy.size(2));
    ASSERT_TRUE(std::equal(wi.pixels.begin(), wi.pixels.end(), npy.data<uint8_t>())) << r[c_path];
    const SliceCam a = slice_cam(model, Device::cpu(), wi.pixels.data(), wi.h, wi.w, wi.channels, 64, 5);
    const SliceCam b = slice_cam(model, Device::cpu(), npy.data<uint8_t>(), wi.h, wi.w, wi.channels, 64, 5);
    ASSERT_EQ(a.size, 64);
    ASSERT_EQ(a.rgb.size(), size_t(64 * 64 * 3));
    EXPECT_EQ(a.rgb, b.rgb) << r[c_path];
    EXPECT_EQ(a.cam.logit, b.cam.logit);
    EXPECT_GT(*std::max_element(a.rgb.begin(), a.rgb.end()), *std::min_element(a.rgb.begin(), a.rgb.end()));
    ++compared;
  }
  EXPECT_EQ(compared, 12);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ich
