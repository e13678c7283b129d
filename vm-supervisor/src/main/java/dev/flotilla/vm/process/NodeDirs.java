package dev.flotilla.vm.process;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The process driver's directories on the host: made by the node, with the modes it chose. */
final class NodeDirs {
  private static final Logger log = LoggerFactory.getLogger(NodeDirs.class);

  private NodeDirs() {}

  /**
   * A node-owned directory with {@code mode} (the traversable ones of the run root; node-only 0700
   * ones come from {@link dev.flotilla.vm.NodeOnlyFiles#createPrivateDir}); refused if a symlink sits there.
   */
  static void privateDir(Path dir, String mode) throws IOException {
    if (Files.isSymbolicLink(dir)) throw new IOException(dir + " is a symbolic link; refusing to use it");
    Files.createDirectories(dir);
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString(mode));
  }

  /** An empty directory owned by {@code uid} (0700): whatever an earlier incarnation left is removed first. */
  static void freshDir(Path dir, long uid) throws IOException {
    deleteTree(dir);
    Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
    Files.setAttribute(dir, "unix:uid", (int) uid, LinkOption.NOFOLLOW_LINKS);
    Files.setAttribute(dir, "unix:gid", (int) uid, LinkOption.NOFOLLOW_LINKS);
  }

  /** Removes a tree without following symbolic links, and without a race with a link swapped in meanwhile. */
  static void deleteTree(Path dir) {
    try {
      dev.flotilla.vm.NodeOnlyFiles.deleteTree(dir);
    } catch (IOException e) {
      log.warn("cannot delete {}: {}", dir, e.getMessage());
    }
  }
}
