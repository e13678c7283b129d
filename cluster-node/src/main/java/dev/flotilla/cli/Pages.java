package dev.flotilla.cli;

import java.util.HashSet;
import java.util.Set;
import java.util.function.Consumer;
import java.util.function.Function;

/** Every page of a paged call, in order: each response's next page token asks for the next one. */
final class Pages {
  private Pages() {}

  /**
   * @param fetch the call for a page token ("" for the first page)
   * @param nextToken the response's next page token, empty on the last page
   * @param what what is listed, for the error when the node repeats a token
   */
  static <R> void each(Function<String, R> fetch, Function<R, String> nextToken, Consumer<R> onPage, String what) {
    Set<String> seen = new HashSet<>();
    String token = "";
    while (true) {
      R page = fetch.apply(token);
      onPage.accept(page);
      token = nextToken.apply(page);
      if (token.isEmpty()) return;
      // a node bug must not turn into a CLI that never returns
      if (!seen.add(token)) {
        throw new CliFailure(ExitCodes.REQUEST_FAILED, "the node returned the same page token twice; the " + what + " is incomplete");
      }
    }
  }
}
