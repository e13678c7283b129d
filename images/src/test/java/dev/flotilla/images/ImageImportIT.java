package dev.flotilla.images;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.images.oci.Manifest;
import dev.flotilla.images.oci.MediaTypes;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code image import} of an OCI layout tar made with umoci and of a docker-save archive. */
class ImageImportIT {
  @TempDir Path dir;

  private ImageStore store() {
    return new ImageStore(ImagesConfig.defaults(dir.resolve("store")), Set::of, Runnable::run);
  }

  @Test
  void importsAnOciLayoutTarMadeWithUmoci() throws Exception {
    TestUmoci.requireTools();
    Path layout = dir.resolve("layout");
    TestUmoci.build(dir, layout, "v1", Map.of("etc/greeting", "from umoci", "bin/tool", "#!/bin/sh\n"), "MODE=import", "/srv");
    TestUmoci.build(dir, layout, "v2", Map.of("etc/greeting", "other"), "MODE=other", "/srv");
    Path tar = dir.resolve("layout.tar");
    TestTools.run(null, "tar", "-C", layout.toString(), "-cf", tar.toString(), ".");

    ImageStore store = store();
    ImageException e = assertThrows(ImageException.class, () -> store.importArchive(tar, Optional.empty(), "tenant-a"));
    assertTrue(e.getMessage().contains("holds 2 images (v1, v2)"), e.getMessage());

    ResolvedImage img = store.importArchive(tar, Optional.of("local/imported:v1"), "tenant-a");
    assertEquals("docker.io/local/imported:v1", img.reference().orElseThrow().toString());
    assertTrue(img.config().env().contains("MODE=import"), img.config().env().toString());
    assertEquals("/srv", img.config().workingDir());
    assertEquals("from umoci", Files.readString(store.layerDirs(img.manifestDigest()).get(0).resolve("etc/greeting")));
    String umociDigest = TestTools.run(null, "sh", "-c",
        "grep -o '\"digest\":\"sha256:[0-9a-f]*\",\"size\":[0-9]*,\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"' "
            + layout.resolve("index.json") + " | cut -d'\"' -f4");
    assertEquals(umociDigest, img.manifestDigest().toString(), "the layout's own manifest, not a copy");
    assertTrue(store.resolve("local/imported:v1", "tenant-b").isEmpty(), "an imported image belongs to its tenant");
    assertTrue(store.resolve("local/imported:v1", "tenant-a").isPresent());
  }

  @Test
  void importsADockerSaveArchiveAsASynthesizedOciManifest() throws Exception {
    byte[] layer = new TestTar()
        .dir("etc", 0755)
        .file("etc/greeting", "from docker save")
        .file("app/run.sh", "#!/bin/sh\necho hi\n", 0755, 0, 0)
        .bytes();
    Digest diffId = Digest.of(layer);
    byte[] config = ("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/bin\",\"SAVED=1\"],"
        + "\"WorkingDir\":\"/app\",\"User\":\"1000:1000\",\"Entrypoint\":[\"/app/run.sh\"],\"Cmd\":[\"--help\"]},"
        + "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" + diffId + "\"]}}").getBytes(StandardCharsets.UTF_8);
    String configName = Digest.of(config).hex() + ".json";
    String layerId = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    Path archive = dir.resolve("saved.tar");
    try (OutputStream out = Files.newOutputStream(archive); TarArchiveOutputStream tar = new TarArchiveOutputStream(out)) {
      put(tar, layerId + "/VERSION", "1.0".getBytes(StandardCharsets.UTF_8));
      put(tar, layerId + "/json", "{}".getBytes(StandardCharsets.UTF_8));
      put(tar, layerId + "/layer.tar", layer);
      put(tar, configName, config);
      put(tar, "manifest.json", ("[{\"Config\":\"" + configName + "\",\"RepoTags\":[\"saved/app:1\"],\"Layers\":[\""
          + layerId + "/layer.tar\"]}]").getBytes(StandardCharsets.UTF_8));
      put(tar, "repositories", ("{\"saved/app\":{\"1\":\"" + layerId + "\"}}").getBytes(StandardCharsets.UTF_8));
    }

    ImageStore store = store();
    ResolvedImage img = store.importArchive(archive, Optional.empty(), ImageStore.SHARED);
    assertEquals("docker.io/saved/app:1", img.reference().orElseThrow().toString());
    assertEquals(List.of("PATH=/usr/bin", "SAVED=1"), img.config().env());
    assertEquals("/app", img.config().workingDir());
    assertEquals("1000:1000", img.config().user());
    assertEquals(List.of("/app/run.sh"), img.config().entrypoint());
    assertEquals(List.of("--help"), img.config().cmd());
    assertEquals(Digest.of(config), img.configDigest());
    assertEquals(List.of(diffId), img.layers(), "an uncompressed layer's digest is its diff_id");

    Manifest m = Manifest.parse(store.blobs().read(img.manifestDigest(), 1 << 20));
    assertEquals(MediaTypes.OCI_MANIFEST, m.mediaType());
    assertEquals(MediaTypes.OCI_LAYER_TAR, m.layers().get(0).mediaType());
    Path top = store.layerDirs(img.manifestDigest()).get(0);
    assertEquals("from docker save", Files.readString(top.resolve("etc/greeting")));
    assertTrue(Files.isExecutable(top.resolve("app/run.sh")));
    assertTrue(store.resolve("saved/app:1", "any-tenant").isPresent(), "imported as shared");

    ResolvedImage renamed = store.importArchive(archive, Optional.of("other/name:2"), "tenant-x");
    assertEquals(img.manifestDigest(), renamed.manifestDigest(), "the same archive synthesizes the same manifest");
  }

  private static void put(TarArchiveOutputStream tar, String name, byte[] content) throws IOException {
    TarArchiveEntry e = new TarArchiveEntry(name);
    e.setSize(content.length);
    tar.putArchiveEntry(e);
    tar.write(content);
    tar.closeArchiveEntry();
  }
}
