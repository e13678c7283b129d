package dev.flotilla.sandbox.protocol;

import java.util.List;

/**
 * One page of a directory listing: entries depth first, each directory's by name.
 *
 * @param path the listed directory, absolute inside the sandbox
 * @param nextPageToken where the next page starts; empty on the last page
 * @param incomplete a directory held more names than the guest reads from one: entries are missing
 */
public record DirPage(String path, List<FsEntry> entries, String nextPageToken, boolean incomplete) implements FsValue {
  public DirPage {
    entries = List.copyOf(entries);
    nextPageToken = nextPageToken == null ? "" : nextPageToken;
  }
}
