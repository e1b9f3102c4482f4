// The direct reader (dicom/dicom_direct.h) against DCMTK's read_dicom(): on
// every file it accepts, the same header and the same stored values; the
// files it must accept (uncompressed little endian, explicit and implicit,
// nested sequences, 8 and 16 bits, signed and unsigned, MONOCHROME1) it
// does; everything else it declines. Inputs: Debian's pydicom test files
// (the dicom_ref fixture), a phantom, and variants of a phantom slice
// re-encoded here with DCMTK.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcitem.h>

#include <filesystem>

#include "dicom/dicom_direct.h"
#include "dicom/window_job.h"
#include "phantom/phantom.h"
#include "tests/phantom_fixture.h"
#include "tests/test_util.h"

namespace ich {
namespace {

namespace fs = std::filesystem;
const std::string kRef = ICH_DICOM_REF_DIR;

// Reads `path` both ways; returns whether the direct reader accepted it, and
// fails the test where the two disagree.
bool accepted_and_equal(const std::string& path) {
  std::vector<uint8_t> buf;
  DicomSlice d;
  const uint8_t* px = nullptr;
  const bool direct = read_dicom_direct(path, buf, d, px);
  DicomSlice r;
  try {
    r = read_dicom(path);
  } catch (const Error& e) {
    EXPECT_FALSE(direct) << path << ": accepted, but DCMTK says: " << e.what();
    return false;
  }
  if (!direct) return false;
  EXPECT_EQ(d.sop_uid, r.sop_uid);
  EXPECT_EQ(d.patient_id, r.patient_id);
  EXPECT_EQ(d.study_uid, r.study_uid);
  EXPECT_EQ(d.series_uid, r.series_uid);
  EXPECT_EQ(d.modality, r.modality);
  EXPECT_EQ(d.sop_class, r.sop_class);
  EXPECT_EQ(d.photometric, r.photometric);
  EXPECT_EQ(d.transfer_syntax, r.transfer_syntax);
  EXPECT_EQ(d.has_z, r.has_z);
  EXPECT_EQ(d.z, r.z);
  EXPECT_EQ(d.rows, r.rows);
  EXPECT_EQ(d.cols, r.cols);
  EXPECT_EQ(d.bits_allocated, r.bits_allocated);
  EXPECT_EQ(d.bits_stored, r.bits_stored);
  EXPECT_EQ(d.pixel_representation, r.pixel_representation);
  EXPECT_EQ(d.slope, r.slope);
  EXPECT_EQ(d.intercept, r.intercept);
  EXPECT_EQ(d.window_centers, r.window_centers);
  EXPECT_EQ(d.window_widths, r.window_widths);
  EXPECT_EQ(d.spacing_row, r.spacing_row);
  EXPECT_EQ(d.spacing_col, r.spacing_col);
  EXPECT_EQ(d.has_orientation, r.has_orientation);
  EXPECT_TRUE(std::equal(d.orientation, d.orientation + 6, r.orientation));
  EXPECT_EQ(d.frame, r.frame);
  EXPECT_EQ(d.frames, r.frames);
  EXPECT_EQ(d.transfer_syntax_uid, r.transfer_syntax_uid);
  size_t differ = 0;
  for_each_stored(d, px, r.raw.size(), [&](size_t i, int32_t v) { differ += v != r.raw[i]; });
  EXPECT_EQ(differ, 0u) << path;
  return true;
}

class DirectReader : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::fresh_dir("ich_direct_test");
    PhantomOptions o;
  o.difficulty = "easy";  // the first phantom: bright, sharp lesions, quick to learn
    o.patients = 12;
    o.slices_per_series = 6;
    o.size = 64;
    o.seed = 5;
    o.corrupt_fraction = 0.1;
    test::make_phantom_set(dir_, o, /*windowed=*/false);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::vector<std::string> phantom_files() { return list_files(dir_ + "/ph/dicom"); }
  // A phantom slice, changed by `edit`, saved in `xfer` with `lengths`.
  static std::string variant(const std::string& name, const std::function<void(DcmDataset*)>& edit,
                             E_TransferSyntax xfer = EXS_LittleEndianExplicit,
                             E_EncodingType lengths = EET_ExplicitLength) {
    DcmFileFormat ff;
    EXPECT_TRUE(ff.loadFile(phantom_files().front().c_str()).good());
    edit(ff.getDataset());
    const std::string path = dir_ + "/" + name + ".dcm";
    const OFCondition c = ff.saveFile(path.c_str(), xfer, lengths);
    EXPECT_TRUE(c.good()) << name << ": " << c.text();
    return path;
  }
  static std::string dir_;
};
std::string DirectReader::dir_;

TEST_F(DirectReader, AgreesWithDcmtkOnEveryPydicomFile) {
  int accepted = 0, files = 0;
  std::set<std::string> taken;
  for (const std::string& f : list_files(kRef + "/input")) {
    SCOPED_TRACE(f);
    ++files;
    if (accepted_and_equal(f)) {
      ++accepted;
      taken.insert(fs::path(f).filename().string());
    }
  }
  EXPECT_GE(files, 14);
  // CT_small and MR_small (explicit) and MR_small_implicit are plain little
  // endian; big endian, RLE, deflate and the bad files are left to DCMTK.
  EXPECT_GE(accepted, 3);
  for (const std::string& name : taken) {
    EXPECT_EQ(name.find("big"), std::string::npos) << name;
    EXPECT_EQ(name.find("rle"), std::string::npos) << name;
    EXPECT_EQ(name.find("bad_"), std::string::npos) << name;
  }
  EXPECT_TRUE(taken.count("good02_MR_small_implicit.dcm")) << "implicit VR little endian declined";
}

TEST_F(DirectReader, TakesEveryIntactPhantomSliceAndNoCorruptOne) {
  int intact = 0, accepted = 0;
  for (const std::string& f : phantom_files()) {
    SCOPED_TRACE(f);
    bool readable = true;
    try {
      read_dicom(f);
    } catch (const Error&) {
      readable = false;
    }
    intact += readable;
    accepted += accepted_and_equal(f);
  }
  EXPECT_GT(intact, 40);
  EXPECT_EQ(accepted, intact);
}

TEST_F(DirectReader, EncodingsAndAttributeVariants) {
  auto keep = [](DcmDataset*) {};
  auto with_sequence = [](DcmDataset* ds) {
    DcmItem* item = nullptr;
    ASSERT_TRUE(ds->findOrCreateSequenceItem(DCM_ReferencedImageSequence, item, -2).good());
    item->putAndInsertString(DCM_ReferencedSOPInstanceUID, "1.2.3.4.5");
    DcmItem* inner = nullptr;
    ASSERT_TRUE(item->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, inner, -2).good());
    inner->putAndInsertString(DCM_CodeValue, "121311");
  };
  // Must be taken (and equal).
  EXPECT_TRUE(accepted_and_equal(variant("explicit", keep)));
  EXPECT_TRUE(accepted_and_equal(variant("implicit", keep, EXS_LittleEndianImplicit)));
  EXPECT_TRUE(accepted_and_equal(variant("seq_explicit", with_sequence)));
  EXPECT_TRUE(accepted_and_equal(variant("seq_implicit", with_sequence, EXS_LittleEndianImplicit)));
  EXPECT_TRUE(accepted_and_equal(
      variant("seq_undefined_explicit", with_sequence, EXS_LittleEndianExplicit, EET_UndefinedLength)));
  EXPECT_TRUE(accepted_and_equal(
      variant("seq_undefined_implicit", with_sequence, EXS_LittleEndianImplicit, EET_UndefinedLength)));
  EXPECT_TRUE(accepted_and_equal(variant("mono1", [](DcmDataset* ds) {
    ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME1");
  })));
  EXPECT_TRUE(accepted_and_equal(variant("signed12", [](DcmDataset* ds) {
    ds->putAndInsertUint16(DCM_BitsStored, 12);
    ds->putAndInsertUint16(DCM_PixelRepresentation, 1);
  })));
  EXPECT_TRUE(accepted_and_equal(variant("eight_bit", [](DcmDataset* ds) {
    Uint16 r = 0, c = 0;
    ds->findAndGetUint16(DCM_Rows, r);
    ds->findAndGetUint16(DCM_Columns, c);
    std::vector<Uint8> px(size_t(r) * c);
    for (size_t i = 0; i < px.size(); ++i) px[i] = Uint8(i * 7);
    ds->putAndInsertUint16(DCM_BitsAllocated, 8);
    ds->putAndInsertUint16(DCM_BitsStored, 8);
    ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
    ds->putAndInsertUint8Array(DCM_PixelData, px.data(), px.size());
  })));
  EXPECT_TRUE(accepted_and_equal(variant("no_optional", [](DcmDataset* ds) {
    for (const DcmTagKey& t : {DCM_WindowCenter, DCM_WindowWidth, DCM_RescaleSlope, DCM_RescaleIntercept,
                               DCM_ImagePositionPatient, DCM_PixelSpacing, DCM_PatientID})
      delete ds->remove(t);
  })));
  // Must be declined (DCMTK decodes them or says why not).
  EXPECT_FALSE(accepted_and_equal(variant("big_endian", keep, EXS_BigEndianExplicit)));
  EXPECT_FALSE(accepted_and_equal(variant("deflated", keep, EXS_DeflatedLittleEndianExplicit)));
  EXPECT_FALSE(accepted_and_equal(variant("rgb", [](DcmDataset* ds) {
    ds->putAndInsertUint16(DCM_SamplesPerPixel, 3);
  })));
  EXPECT_FALSE(accepted_and_equal(variant("no_rows", [](DcmDataset* ds) { delete ds->remove(DCM_Rows); })));
  EXPECT_FALSE(accepted_and_equal(variant("leading_space_id", [](DcmDataset* ds) {
    ds->putAndInsertString(DCM_PatientID, " ID_X");
  })));
  // A Modality LUT, or Enhanced functional groups (one frame's rescale
  // there), change what the stored values mean: DCMTK's path reads them.
  EXPECT_FALSE(accepted_and_equal(variant("modality_lut", [](DcmDataset* ds) {
    DcmItem* item = nullptr;
    ASSERT_TRUE(ds->findOrCreateSequenceItem(DCM_ModalityLUTSequence, item, -2).good());
    const Uint16 desc[3] = {4, 0, 16}, data[4] = {0, 100, 200, 300};
    item->putAndInsertUint16Array(DCM_LUTDescriptor, desc, 3);
    item->putAndInsertUint16Array(DCM_LUTData, data, 4);
  })));
  EXPECT_FALSE(accepted_and_equal(variant("enhanced_one_frame", [](DcmDataset* ds) {
    DcmItem* shared = nullptr;
    ASSERT_TRUE(ds->findOrCreateSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, -2).good());
    DcmItem* pvt = nullptr;
    ASSERT_TRUE(shared->findOrCreateSequenceItem(DCM_PixelValueTransformationSequence, pvt, -2).good());
    pvt->putAndInsertString(DCM_RescaleIntercept, "-1000");
    pvt->putAndInsertString(DCM_RescaleSlope, "1");
  })));
  const std::string cut = variant("cut", keep);
  fs::resize_file(cut, fs::file_size(cut) - 2);
  EXPECT_FALSE(accepted_and_equal(cut));
}

TEST_F(DirectReader, WindowFileGivesTheSameBytesBothWays) {
  // window_file() (direct reader, cached table) against the per-pixel formula.
  WindowScratch scratch;
  std::vector<uint8_t> got_bytes;
  int direct = 0;
  for (const std::string& f : phantom_files()) {
    for (const char* spec : {"brain,subdural,soft", "dicom", "brain", "40/80,80/200,40/380,600/2800,1/1"}) {
      SCOPED_TRACE(f + " " + spec);
      const std::vector<Window> ws = parse_windows(spec);
      DicomSlice s;
      SliceWindowing how;
      how.windows = ws;
      std::vector<WindowedFile> got_frames;
      auto window_it = [&] {
        got_frames.clear();
        window_file(f, how, scratch, [&](const WindowedFile& w) {
          got_frames.push_back(w);
          // The pixels live in the scratch buffer until the next frame.
          got_bytes.assign(w.pixels, w.pixels + size_t(w.h) * w.w * w.channels);
        });
      };
      try {
        s = read_dicom(f);
      } catch (const Error&) {
        EXPECT_THROW(window_it(), Error);
        continue;
      }
      // The oracle: the formula on every pixel's HU, no table.
      const std::vector<Window> resolved =
          ws.empty() ? std::vector<Window>{{s.window_centers[0], s.window_widths[0]}} : ws;
      const std::vector<uint8_t> want = window_image(hounsfield(s), resolved, s.photometric == "MONOCHROME1");
      window_it();
      ASSERT_EQ(got_frames.size(), 1u);
      const WindowedFile& got = got_frames[0];
      direct += got.direct;
      ASSERT_EQ(size_t(got.h) * got.w * got.channels, want.size());
      EXPECT_EQ(got_bytes, want);
    }
  }
  EXPECT_GT(direct, 100);
}

}  // namespace
}  // namespace ich
