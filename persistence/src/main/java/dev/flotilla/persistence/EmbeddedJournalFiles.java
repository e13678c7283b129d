package dev.flotilla.persistence;

import com.typesafe.config.Config;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The embedded H2 journal's files are node-only: their directory 0700 and the files in it 0600.
 * H2 creates its files with the process's umask (usually 0644), so the directory is made private
 * before H2 first opens the database and the files are tightened after.
 */
public final class EmbeddedJournalFiles {
  private static final Logger log = LoggerFactory.getLogger(EmbeddedJournalFiles.class);
  private static final Set<PosixFilePermission> DIR_MODE = PosixFilePermissions.fromString("rwx------");
  private static final Set<PosixFilePermission> FILE_MODE = PosixFilePermissions.fromString("rw-------");
  private static final String H2_FILE_URL = "jdbc:h2:file:";

  private EmbeddedJournalFiles() {}

  /** The H2 directory a config made by {@link PersistenceSettings#forNode} uses; empty for PostgreSQL. */
  public static Optional<Path> directory(Config config) {
    String url = config.getString(PersistenceSettings.SHARED_DB_PATH + ".db.url");
    if (!url.startsWith(H2_FILE_URL)) return Optional.empty();
    String base = url.substring(H2_FILE_URL.length());
    int semi = base.indexOf(';');
    if (semi >= 0) base = base.substring(0, semi);
    return Optional.ofNullable(Path.of(base).toAbsolutePath().getParent());
  }

  /**
   * Creates the embedded journal's directory 0700 (or tightens it) and sets its files to 0600.
   * No-op for PostgreSQL. Links in the directory are left alone, never followed.
   *
   * @return what was changed, one line each (also logged)
   */
  public static List<String> secure(Config config) throws IOException {
    Optional<Path> dir = directory(config);
    if (dir.isEmpty()) return List.of();
    List<String> changed = new ArrayList<>();
    Path d = dir.get();
    if (!Files.exists(d, LinkOption.NOFOLLOW_LINKS)) {
      if (d.getParent() != null) Files.createDirectories(d.getParent());
      Files.createDirectory(d, PosixFilePermissions.asFileAttribute(DIR_MODE));
    }
    tighten(d, DIR_MODE, changed);
    try (DirectoryStream<Path> files = Files.newDirectoryStream(d)) {
      for (Path f : files) {
        PosixFileAttributes a = Files.readAttributes(f, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        if (a.isRegularFile()) tighten(f, FILE_MODE, changed);
      }
    }
    changed.forEach(c -> log.warn("embedded journal: {}", c));
    return changed;
  }

  private static void tighten(Path p, Set<PosixFilePermission> mode, List<String> changed) throws IOException {
    Set<PosixFilePermission> before = Files.getPosixFilePermissions(p, LinkOption.NOFOLLOW_LINKS);
    if (before.equals(mode)) return;
    Files.setPosixFilePermissions(p, mode);
    changed.add(p + " was " + PosixFilePermissions.toString(before) + ", now " + PosixFilePermissions.toString(mode));
  }
}
