package dev.flotilla.images;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class DigestTest {

  @Test
  void sha256OfContentAndRoundTrip() {
    Digest d = Digest.of("hello".getBytes(StandardCharsets.UTF_8));
    assertEquals("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", d.toString());
    assertEquals(d, Digest.parse(d.toString()));
    assertTrue(Digest.isDigest(d.toString()));
  }

  @Test
  void refusesOtherAlgorithmsAndMalformedHex() {
    String hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    assertTrue(assertThrows(ImageException.class, () -> Digest.parse("sha512:" + hex)).getMessage()
        .contains("'sha512' is not supported, only sha256"));
    assertTrue(assertThrows(ImageException.class, () -> Digest.parse("sha256:" + hex.toUpperCase())).getMessage()
        .contains("64 lowercase hex"));
    assertTrue(assertThrows(ImageException.class, () -> Digest.parse("sha256:" + hex + "0")).getMessage()
        .contains("got 65 characters"));
    assertTrue(assertThrows(ImageException.class, () -> Digest.parse(hex)).getMessage().contains("no algorithm"));
    assertFalse(Digest.isDigest("sha256:../../etc/passwd"));
    assertThrows(ImageException.class, () -> new Digest("../x"));
  }
}
