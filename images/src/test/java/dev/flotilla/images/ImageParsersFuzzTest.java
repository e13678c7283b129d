package dev.flotilla.images;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.flotilla.images.oci.Descriptor;
import dev.flotilla.images.oci.ImageIndex;
import dev.flotilla.images.oci.Manifest;
import dev.flotilla.images.oci.Platform;
import java.nio.charset.StandardCharsets;
import java.util.function.Supplier;

/**
 * The parsers of what a registry or an imported archive hands the node: image manifests, indexes,
 * configs, references and digests. Each either returns a valid object or refuses with an
 * {@link ImageException} (any other exception escaping is a finding), and what it returns
 * survives its own serialisation unchanged.
 */
class ImageParsersFuzzTest {

  /** One target for the five parsers, so that one fuzzing JVM covers them: the last byte picks. */
  @FuzzTest(maxDuration = "10s")
  void parse(FuzzedDataProvider data) {
    int which = data.consumeInt(0, 4);
    byte[] input = data.consumeRemainingAsBytes();
    switch (which) {
      case 0 -> manifest(input);
      case 1 -> index(input);
      case 2 -> config(input);
      case 3 -> reference(input);
      default -> digest(input);
    }
  }

  private static void manifest(byte[] json) {
    Manifest m = parseOrRefuse(() -> Manifest.parse(json));
    if (m == null) return;
    assertNotNull(m.config());
    m.layers().forEach(ImageParsersFuzzTest::checkDescriptor);
    checkDescriptor(m.config());
    assertEquals(m, Manifest.parse(m.toJson()), "a manifest survives its own JSON form");
  }

  private static void index(byte[] json) {
    ImageIndex i = parseOrRefuse(() -> ImageIndex.parse(json));
    if (i == null) return;
    i.manifests().forEach(ImageParsersFuzzTest::checkDescriptor);
    assertEquals(i, ImageIndex.parse(i.toJson()), "an index survives its own JSON form");
    Descriptor chosen = parseOrRefuse(() -> i.select(Platform.LINUX_AMD64));
    if (chosen != null) assertTrue(i.manifests().contains(chosen));
  }

  private static void config(byte[] json) {
    ImageConfig c = parseOrRefuse(() -> ImageConfig.parse(json));
    if (c == null) return;
    assertNotNull(c.workingDir());
    assertNotNull(c.user());
    c.diffIds().forEach(d -> assertEquals(d, Digest.parse(d.toString())));
  }

  private static void reference(byte[] bytes) {
    String s = new String(bytes, StandardCharsets.UTF_8);
    ImageReference r = parseOrRefuse(() -> ImageReference.parse(s));
    if (r == null) return;
    assertTrue(r.tag() != null || r.digest() != null);
    assertTrue(r.toString().length() <= 255 + 128 + 80 + 20, "a reference's canonical form stays bounded");
    assertEquals(r, ImageReference.parse(r.toString()), "a reference survives its canonical form: " + r);
    if (r.digest() != null) assertEquals(r.digest().toString(), r.manifestReference());
  }

  private static void digest(byte[] bytes) {
    String s = new String(bytes, StandardCharsets.UTF_8);
    Digest d = parseOrRefuse(() -> Digest.parse(s));
    assertEquals(d != null, Digest.isDigest(s), "parse and isDigest agree on '" + s + "'");
    if (d == null) return;
    assertEquals(s, d.toString());
  }

  private static void checkDescriptor(Descriptor d) {
    assertNotNull(d.digest());
    assertTrue(d.size() >= 0, "a descriptor's size is not negative");
  }

  /** The parsed value, or null when the parser refused with its own exception. */
  private static <T> T parseOrRefuse(Supplier<T> parse) {
    try {
      return parse.get();
    } catch (ImageException e) {
      assertNotNull(e.getMessage(), "a refusal says why");
      return null;
    }
  }
}
