package dev.flotilla.agent.protocol.client;

import java.time.Instant;

/**
 * One entry of a sandbox's file system, never following a link it names.
 *
 * @param name last path component ("/" for the root)
 * @param path Stat/MakeDir: absolute inside the sandbox; ListDir: relative to the listed directory
 * @param mode permission bits (0777)
 * @param symlinkTarget a link's text as written (it may point anywhere), empty for other types
 */
public record FileEntry(String name, String path, Type type, long size, int mode, Instant modified, String symlinkTarget) {

  public enum Type {
    FILE,
    DIR,
    SYMLINK,
    /** Device, socket, fifo. */
    OTHER
  }
}
