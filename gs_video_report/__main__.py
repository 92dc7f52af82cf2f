from gs_video_report.cli import main

main()
