package dev.flotilla.images.registry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.images.Credentials;
import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.ImageReference;
import dev.flotilla.images.TestDistributionServer;
import dev.flotilla.images.blob.BlobStore;
import dev.flotilla.images.layout.OciLayoutWriter;
import dev.flotilla.images.oci.Descriptor;
import dev.flotilla.images.oci.ImageIndex;
import dev.flotilla.images.oci.MediaTypes;
import dev.flotilla.images.oci.Platform;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The client's side of the distribution protocol against a real HTTP server of it. */
class RegistryProtocolTest {
  @TempDir Path dir;
  Path layout;
  Digest manifest;
  byte[] manifestBytes;
  BlobStore blobs;

  @BeforeEach
  void image() throws Exception {
    Path rootfs = Files.createDirectories(dir.resolve("rootfs"));
    Files.writeString(rootfs.resolve("hello"), "hello");
    layout = dir.resolve("layout");
    manifest = OciLayoutWriter.write(rootfs, layout, "1", OciLayoutWriter.Defaults.of(List.of(), "/", List.of("sh")));
    manifestBytes = Files.readAllBytes(layout.resolve("blobs/sha256/" + manifest.hex()));
    blobs = new BlobStore(dir.resolve("store"));
  }

  private static RegistryClient client() {
    return new RegistryClient(RegistryConfig.defaults());
  }

  @Test
  void anIndexResolvesToItsLinuxAmd64ManifestAndSaysWhatItHasOtherwise() throws Exception {
    try (TestDistributionServer reg = TestDistributionServer.start().blobsOf(layout)) {
      Digest other = Digest.of("an arm64 manifest".getBytes(StandardCharsets.UTF_8));
      byte[] index = new ImageIndex(MediaTypes.OCI_INDEX, List.of(
          new Descriptor(MediaTypes.OCI_MANIFEST, other, 10, Map.of(), new Platform("linux", "arm64", "v8")),
          new Descriptor(MediaTypes.OCI_MANIFEST, manifest, manifestBytes.length, Map.of(), new Platform("linux", "amd64", null))))
          .toJson();
      reg.manifest("multi", "1", MediaTypes.OCI_INDEX, index)
          .manifest("multi", manifest.toString(), MediaTypes.OCI_MANIFEST, manifestBytes);
      RegistryClient.Pulled p = client().pull(ImageReference.parse(reg.address() + "/multi:1"), null, blobs);
      assertEquals(manifest, p.manifestDigest());
      assertEquals(Digest.of(index), p.indexDigest());
      assertTrue(blobs.contains(p.manifest().layers().get(0).digest()));

      byte[] armOnly = new ImageIndex(MediaTypes.OCI_INDEX, List.of(
          new Descriptor(MediaTypes.OCI_MANIFEST, other, 10, Map.of(), new Platform("linux", "arm64", "v8")))).toJson();
      reg.manifest("arm", "1", MediaTypes.DOCKER_MANIFEST_LIST, armOnly);
      ImageException e = assertThrows(ImageException.class,
          () -> client().pull(ImageReference.parse(reg.address() + "/arm:1"), null, blobs));
      assertTrue(e.getMessage().contains("no linux/amd64 variant (it has: linux/arm64/v8)"), e.getMessage());
    }
  }

  @Test
  void blobRedirectsAreFollowedWithoutTakingTheCredentialsAlong() throws Exception {
    Path tokenFile = dir.resolve("token");
    Files.writeString(tokenFile, "s3cr3t-token\n");
    try (TestDistributionServer cdn = TestDistributionServer.start().blobsOf(layout);
         TestDistributionServer reg = TestDistributionServer.start()) {
      reg.manifest("app", "1", MediaTypes.OCI_MANIFEST, manifestBytes)
          .requireBearer("s3cr3t-token", "https://auth.invalid/token")
          .redirectBlobsTo(cdn);
      RegistryClient.Pulled p = client().pull(ImageReference.parse(reg.address() + "/app:1"),
          Credentials.bearerTokenFile(tokenFile), blobs);
      assertEquals(manifest, p.manifestDigest());
      assertTrue(blobs.contains(p.manifest().config().digest()));
      assertEquals(2, cdn.requests.size(), "config and layer from the redirect target");
      cdn.requests.forEach(r -> assertNull(r.authorization(), "no credentials to another host: " + r));
      reg.requests.forEach(r -> assertEquals("Bearer s3cr3t-token", r.authorization()));
    }
  }

  @Test
  void aPlainHttpTokenRealmOffLoopbackIsRefusedNamingTheSetting() throws Exception {
    try (TestDistributionServer reg = TestDistributionServer.start()) {
      reg.manifest("app", "1", MediaTypes.OCI_MANIFEST, manifestBytes).requireBearer("t", "http://auth.example.com/token");
      ImageException e = assertThrows(ImageException.class,
          () -> client().pull(ImageReference.parse(reg.address() + "/app:1"), null, blobs));
      assertTrue(e.getMessage().contains("refusing plain http to auth.example.com"), e.getMessage());
      assertTrue(e.getMessage().contains("flotilla.images.insecure-registries"), e.getMessage());
    }
  }

  @Test
  void tamperedBlobsAndOversizedManifestsAreRefusedAndNotCached() throws Exception {
    try (TestDistributionServer reg = TestDistributionServer.start().blobsOf(layout)) {
      Digest layer = null;
      for (var e : Files.list(layout.resolve("blobs/sha256")).toList()) {
        byte[] b = Files.readAllBytes(e);
        if (b.length > 2 && (b[0] & 0xff) == 0x1f) {
          layer = Digest.parse("sha256:" + e.getFileName());
          b[b.length - 1] ^= 1;
          reg.blob(layer.toString(), b);
        }
      }
      reg.manifest("app", "1", MediaTypes.OCI_MANIFEST, manifestBytes);
      ImageException e = assertThrows(ImageException.class,
          () -> client().pull(ImageReference.parse(reg.address() + "/app:1"), null, blobs));
      assertTrue(e.getMessage().contains("digest mismatch: expected " + layer), e.getMessage());
      assertFalse(blobs.contains(layer));

      byte[] huge = ("{\"schemaVersion\":2,\"pad\":\"" + "x".repeat(5 << 20) + "\"}").getBytes(StandardCharsets.UTF_8);
      reg.manifest("huge", "1", MediaTypes.OCI_MANIFEST, huge);
      e = assertThrows(ImageException.class, () -> client().pull(ImageReference.parse(reg.address() + "/huge:1"), null, blobs));
      assertTrue(e.getMessage().contains("larger than 4194304 bytes"), e.getMessage());

      ImageReference wrongDigest = ImageReference.parse(reg.address() + "/app@" + Digest.of(new byte[] {1}));
      reg.manifest("app", Digest.of(new byte[] {1}).toString(), MediaTypes.OCI_MANIFEST, manifestBytes);
      e = assertThrows(ImageException.class, () -> client().pull(wrongDigest, null, blobs));
      assertTrue(e.getMessage().contains("returned content with digest " + manifest), e.getMessage());
    }
  }

  @Test
  void aStalledBlobBodyIsAbandonedAfterTheIdleTimeout() throws Exception {
    try (TestDistributionServer reg = TestDistributionServer.start().blobsOf(layout).stallBlobs()) {
      reg.manifest("app", "1", MediaTypes.OCI_MANIFEST, manifestBytes);
      RegistryClient c = new RegistryClient(RegistryConfig.defaults()
          .withTimeouts(Duration.ofSeconds(5), Duration.ofSeconds(5), Duration.ofMillis(300)));
      ImageException e = assertTimeoutPreemptively(Duration.ofSeconds(20),
          () -> assertThrows(ImageException.class, () -> c.pull(ImageReference.parse(reg.address() + "/app:1"), null, blobs)));
      assertTrue(e.getMessage().contains("no data from the registry for 300 ms"),
          e.getMessage());
      assertTrue(blobs.list().stream().allMatch(d -> d.equals(manifest)), "no partial blob kept: " + blobs.list());
    }
  }

  @Test
  void challengesAndLoopbackNames() {
    List<AuthChallenge> cs = AuthChallenge.parse(List.of(
        "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/busybox:pull\"",
        "Basic realm=\"x, y\""));
    assertEquals(2, cs.size());
    assertTrue(cs.get(0).is("bearer"));
    assertEquals("https://auth.docker.io/token", cs.get(0).params().get("realm"));
    assertEquals("repository:library/busybox:pull", cs.get(0).params().get("scope"));
    assertEquals("x, y", cs.get(1).params().get("realm"));
    assertTrue(RegistrySession.isLoopback("127.1.2.3"));
    assertTrue(RegistrySession.isLoopback("localhost"));
    assertTrue(RegistrySession.isLoopback("[::1]"));
    assertFalse(RegistrySession.isLoopback("127.0.0.1.nip.io"));
    assertFalse(RegistrySession.isLoopback("10.0.0.1"));
  }
}
