package dev.flotilla.images.layout;

import dev.flotilla.images.ImageException;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.archivers.tar.TarConstants;
import org.apache.commons.compress.compressors.gzip.GzipCompressorInputStream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The regular files of an image archive, a directory or a tar (optionally gzipped), visited
 * once in order with their names relative to the archive's root. Symlinks and anything else that
 * is not a regular file are passed over: an archive names its content, it does not point at the
 * host's files.
 */
final class ArchiveEntries {
  private static final Logger log = LoggerFactory.getLogger(ArchiveEntries.class);

  interface Visitor {
    void file(String name, long size, InputStream content) throws IOException;
  }

  private ArchiveEntries() {}

  static void visit(Path archive, Visitor v) {
    try {
      BasicFileAttributes a = Files.readAttributes(archive, BasicFileAttributes.class);
      if (a.isDirectory()) {
        visitDirectory(archive, v);
      } else {
        visitTar(archive, v);
      }
    } catch (IOException e) {
      throw new ImageException("cannot read the image archive " + archive + ": " + e.getMessage(), e);
    }
  }

  private static void visitDirectory(Path root, Visitor v) throws IOException {
    Files.walkFileTree(root, new SimpleFileVisitor<>() {
      @Override
      public FileVisitResult visitFile(Path f, BasicFileAttributes attrs) throws IOException {
        if (!attrs.isRegularFile()) {
          log.warn("image archive {}: {} is not a regular file; ignored", root, root.relativize(f));
          return FileVisitResult.CONTINUE;
        }
        try (InputStream in = Files.newInputStream(f, LinkOption.NOFOLLOW_LINKS)) {
          v.file(root.relativize(f).toString(), attrs.size(), in);
        }
        return FileVisitResult.CONTINUE;
      }
    });
  }

  private static void visitTar(Path tarFile, Visitor v) throws IOException {
    try (InputStream raw = new BufferedInputStream(Files.newInputStream(tarFile), 64 * 1024)) {
      raw.mark(2);
      int b0 = raw.read();
      int b1 = raw.read();
      raw.reset();
      InputStream plain = b0 == 0x1f && b1 == 0x8b
          ? GzipCompressorInputStream.builder().setInputStream(raw).setDecompressConcatenated(true).get()
          : raw;
      TarArchiveInputStream tar = new TarArchiveInputStream(plain, "UTF-8");
      TarArchiveEntry e;
      while ((e = tar.getNextEntry()) != null) {
        byte f = e.getLinkFlag();
        if (f != TarConstants.LF_NORMAL && f != TarConstants.LF_OLDNORM && f != TarConstants.LF_CONTIG) {
          continue;
        }
        String name = normalize(e.getName());
        if (name == null) {
          log.warn("image archive {}: entry '{}' has a '..' component; ignored", tarFile, e.getName());
          continue;
        }
        v.file(name, e.getSize(), tar);
      }
    }
  }

  /** "./blobs//sha256/x" → "blobs/sha256/x"; null when a component is "..". */
  static String normalize(String name) {
    StringBuilder sb = new StringBuilder();
    for (String c : name.split("/")) {
      if (c.isEmpty() || c.equals(".")) {
        continue;
      }
      if (c.equals("..")) {
        return null;
      }
      if (sb.length() > 0) {
        sb.append('/');
      }
      sb.append(c);
    }
    return sb.toString();
  }
}
