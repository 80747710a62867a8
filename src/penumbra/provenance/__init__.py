"""What each synthetic output carries and passes: an invisible watermark naming the run, C2PA
credentials, and the output policy checks (PDQ blocklist, faces); `penumbra identify` reads the
mark back from a stray image."""
