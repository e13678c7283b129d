package dev.flotilla.images;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

class ImageReferenceTest {
  private static final String HEX = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";

  @Test
  void dockerHubDefaults() {
    ImageReference r = ImageReference.parse("busybox");
    assertEquals("docker.io", r.domain());
    assertEquals("registry-1.docker.io", r.registry());
    assertEquals("library/busybox", r.repository());
    assertEquals("latest", r.tag());
    assertNull(r.digest());
    assertEquals("docker.io/library/busybox:latest", r.toString());
    assertEquals("latest", r.manifestReference());
  }

  @ParameterizedTest
  @CsvSource({
      "busybox:1.36, docker.io/library/busybox:1.36, registry-1.docker.io, library/busybox",
      "docker.io/busybox, docker.io/library/busybox:latest, registry-1.docker.io, library/busybox",
      "index.docker.io/library/busybox:1, docker.io/library/busybox:1, registry-1.docker.io, library/busybox",
      "someone/app:v2, docker.io/someone/app:v2, registry-1.docker.io, someone/app",
      "localhost/app, localhost/app:latest, localhost, app",
      "localhost:5000/a/b/c:t-1.2_x, localhost:5000/a/b/c:t-1.2_x, localhost:5000, a/b/c",
      "127.0.0.1:5000/repo, 127.0.0.1:5000/repo:latest, 127.0.0.1:5000, repo",
      "[::1]:5000/repo:t, [::1]:5000/repo:t, [::1]:5000, repo",
      "ghcr.io/org/my-app__x.y:1, ghcr.io/org/my-app__x.y:1, ghcr.io, org/my-app__x.y",
  })
  void parsesGoodReferences(String in, String canonical, String registry, String repo) {
    ImageReference r = ImageReference.parse(in);
    assertEquals(canonical, r.toString());
    assertEquals(registry, r.registry());
    assertEquals(repo, r.repository());
    assertEquals(r, ImageReference.parse(r.toString()), "the canonical form parses back to the same reference");
  }

  @Test
  void digestsAndTagWithDigest() {
    ImageReference d = ImageReference.parse("quay.io/x/y@sha256:" + HEX);
    assertNull(d.tag());
    assertEquals("sha256:" + HEX, d.manifestReference());
    assertEquals("quay.io/x/y@sha256:" + HEX, d.toString());
    ImageReference both = ImageReference.parse("x:1@sha256:" + HEX);
    assertEquals("1", both.tag());
    assertEquals("sha256:" + HEX, both.manifestReference(), "the digest decides what is pulled");
    assertEquals("docker.io/library/x:1", both.withoutDigest().toString());
  }

  @ParameterizedTest
  @CsvSource(delimiter = '|', value = {
      "''| empty image reference",
      "' busybox'| leading or trailing spaces",
      "Busybox| must be lowercase",
      "registry.io/Repo| must be lowercase",
      "repo:| tag '' is invalid",
      "repo:-bad| tag '-bad' is invalid",
      "repo:" + "t12345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901| is invalid",
      "a//b| is empty",
      "a/b/| is empty",
      "registry.io/| has no repository",
      "repo@sha256:abc| exactly 64 lowercase hex",
      "repo@sha512:" + HEX + "| algorithm 'sha512' is not supported",
      "repo@md5| has no algorithm",
      "bad_host.io/x| registry host 'bad_host.io' is invalid",
      "host:99999/x| invalid port '99999'",
      "a..b| may hold only",
      ":tag| has no repository",
  })
  void refusesBadReferencesSayingWhatToFix(String in, String message) {
    ImageException e = assertThrows(ImageException.class, () -> ImageReference.parse(in));
    assertTrue(e.getMessage().contains(message.strip()), () -> "'" + e.getMessage() + "' should say '" + message + "'");
  }

  @Test
  void nameLongerThan255IsRefused() {
    ImageException e = assertThrows(ImageException.class, () -> ImageReference.parse("a/".repeat(130) + "b"));
    assertTrue(e.getMessage().contains("longer than 255"), e.getMessage());
  }
}
