from cxl.cli import main

main()
