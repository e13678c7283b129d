package dev.flotilla.sandbox.protocol;

import java.time.Instant;

/**
 * One entry of a sandbox's file system; a link is described, never followed.
 *
 * @param name last path component ("/" for the root)
 * @param path Stat and MakeDir: absolute inside the sandbox; in a {@link DirPage}: relative to the listed directory
 * @param mode permission bits (0777)
 * @param symlinkTarget a link's text as written (it may point anywhere), empty for other types
 */
public record FsEntry(String name, String path, Type type, long size, int mode, Instant modified, String symlinkTarget)
    implements FsValue {

  public enum Type { FILE, DIR, SYMLINK, OTHER }

  public FsEntry {
    symlinkTarget = symlinkTarget == null ? "" : symlinkTarget;
    modified = modified == null ? Instant.EPOCH : modified;
  }
}
