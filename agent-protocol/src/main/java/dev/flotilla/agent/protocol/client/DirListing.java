package dev.flotilla.agent.protocol.client;

import java.util.List;
import java.util.Optional;

/**
 * One page of a ListDir: entries depth first, each directory's by name.
 *
 * @param path the listed directory, absolute inside the sandbox
 * @param truncated more entries follow: ask again with {@link #nextStartAfter()}
 * @param incomplete some directory held more names than the agent reads from one: entries are missing
 */
public record DirListing(String path, List<FileEntry> entries, boolean truncated, boolean incomplete) {
  public DirListing {
    entries = List.copyOf(entries);
  }

  /** Where the next page starts, when there is one. */
  public Optional<String> nextStartAfter() {
    return truncated && !entries.isEmpty() ? Optional.of(entries.get(entries.size() - 1).path()) : Optional.empty();
  }
}
