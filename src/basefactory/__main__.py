from basefactory.cli import main

raise SystemExit(main())
