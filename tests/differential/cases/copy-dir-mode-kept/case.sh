# directory modes git cannot keep
chmod 700 d && chmod 750 d/sub
