package dev.flotilla.images.layout;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.flotilla.images.Digest;
import dev.flotilla.images.ImageException;
import dev.flotilla.images.oci.Descriptor;
import dev.flotilla.images.oci.ImageIndex;
import dev.flotilla.images.oci.Json;
import dev.flotilla.images.oci.Manifest;
import dev.flotilla.images.oci.MediaTypes;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorOutputStream;

/**
 * Builds a minimal OCI image layout from a directory: one gzipped layer holding the directory
 * (owned by root, modes and mtimes kept, entries in name order), a config with the exec
 * defaults, a manifest, and an index.json naming it. For tests and for a node's built-in image.
 */
public final class OciLayoutWriter {
  private OciLayoutWriter() {}

  /** The exec defaults written into the config. */
  public record Defaults(List<String> env, String workingDir, List<String> entrypoint, List<String> cmd, String user) {
    public Defaults {
      env = List.copyOf(env);
      entrypoint = List.copyOf(entrypoint);
      cmd = List.copyOf(cmd);
      workingDir = workingDir == null ? "" : workingDir;
      user = user == null ? "" : user;
    }

    public static Defaults of(List<String> env, String workingDir, List<String> cmd) {
      return new Defaults(env, workingDir, List.of(), cmd, "");
    }
  }

  /**
   * Writes the layout to {@code layoutDir} (created if missing).
   *
   * @param refName the index entry's {@code org.opencontainers.image.ref.name}: a tag, or a whole
   *     {@code REPO:TAG} so an import needs no --name
   * @return the manifest digest
   */
  public static Digest write(Path rootfs, Path layoutDir, String refName, Defaults defaults) {
    try {
      Path blobDir = layoutDir.resolve("blobs").resolve("sha256");
      Files.createDirectories(blobDir);
      Path tmp = Files.createTempFile(blobDir, ".layer-", "");
      MessageDigest diff = Digest.newHasher();
      MessageDigest compressed = Digest.newHasher();
      try (OutputStream file = Files.newOutputStream(tmp);
           DigestOutputStream gzOut = new DigestOutputStream(file, compressed);
           GzipCompressorOutputStream gz = new GzipCompressorOutputStream(gzOut);
           DigestOutputStream tarOut = new DigestOutputStream(gz, diff)) {
        writeTar(rootfs, tarOut);
      }
      Digest layer = Digest.fromHasher(compressed);
      Digest diffId = Digest.fromHasher(diff);
      long layerSize = Files.size(tmp);
      Files.move(tmp, blobDir.resolve(layer.hex()), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);

      byte[] config = config(defaults, diffId);
      Digest configDigest = writeBlob(blobDir, config);
      Manifest m = new Manifest(MediaTypes.OCI_MANIFEST, new Descriptor(MediaTypes.OCI_CONFIG, configDigest, config.length),
          List.of(new Descriptor(MediaTypes.OCI_LAYER_GZIP, layer, layerSize)));
      byte[] manifest = m.toJson();
      Digest manifestDigest = writeBlob(blobDir, manifest);
      ImageIndex index = new ImageIndex(MediaTypes.OCI_INDEX, List.of(new Descriptor(MediaTypes.OCI_MANIFEST,
          manifestDigest, manifest.length, Map.of(Descriptor.REF_NAME, refName), null)));
      Files.write(layoutDir.resolve("index.json"), index.toJson());
      Files.writeString(layoutDir.resolve("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
      return manifestDigest;
    } catch (IOException e) {
      throw new ImageException("cannot write an OCI layout of " + rootfs + " to " + layoutDir + ": " + e.getMessage(), e);
    }
  }

  /** A tar of {@code dir}'s content (the directory itself is "./"), root-owned, for layers and for shipping layouts. */
  public static void writeTar(Path dir, OutputStream out) throws IOException {
    TarArchiveOutputStream tar = new TarArchiveOutputStream(out, "UTF-8");
    tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
    tar.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
    List<Path> paths;
    try (Stream<Path> s = Files.walk(dir)) {
      paths = s.sorted().toList();
    }
    for (Path p : paths) {
      BasicFileAttributes a = Files.readAttributes(p, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
      String rel = dir.relativize(p).toString();
      TarArchiveEntry e;
      if (a.isSymbolicLink()) {
        e = new TarArchiveEntry(rel, TarArchiveEntry.LF_SYMLINK);
        e.setLinkName(Files.readSymbolicLink(p).toString());
        e.setMode(0120777);
      } else if (a.isDirectory()) {
        e = new TarArchiveEntry(rel.isEmpty() ? "./" : rel + "/");
        e.setMode(040000 | ((Integer) Files.getAttribute(p, "unix:mode") & 07777));
      } else if (a.isRegularFile()) {
        e = new TarArchiveEntry(rel);
        e.setMode(0100000 | ((Integer) Files.getAttribute(p, "unix:mode") & 07777));
        e.setSize(a.size());
      } else {
        continue;
      }
      e.setModTime(a.lastModifiedTime());
      e.setIds(0, 0);
      e.setNames("root", "root");
      tar.putArchiveEntry(e);
      if (a.isRegularFile()) {
        Files.copy(p, tar);
      }
      tar.closeArchiveEntry();
    }
    tar.finish();
  }

  private static byte[] config(Defaults d, Digest diffId) {
    ObjectNode n = Json.MAPPER.createObjectNode();
    n.put("architecture", "amd64");
    n.put("os", "linux");
    ObjectNode c = n.putObject("config");
    ArrayNode env = c.putArray("Env");
    d.env().forEach(env::add);
    if (!d.workingDir().isEmpty()) {
      c.put("WorkingDir", d.workingDir());
    }
    if (!d.user().isEmpty()) {
      c.put("User", d.user());
    }
    if (!d.entrypoint().isEmpty()) {
      ArrayNode ep = c.putArray("Entrypoint");
      d.entrypoint().forEach(ep::add);
    }
    if (!d.cmd().isEmpty()) {
      ArrayNode cmd = c.putArray("Cmd");
      d.cmd().forEach(cmd::add);
    }
    ObjectNode rootfs = n.putObject("rootfs");
    rootfs.put("type", "layers");
    rootfs.putArray("diff_ids").add(diffId.toString());
    return Json.write(n);
  }

  private static Digest writeBlob(Path blobDir, byte[] content) throws IOException {
    Digest d = Digest.of(content);
    Files.write(blobDir.resolve(d.hex()), content);
    return d;
  }
}
